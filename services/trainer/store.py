"""Durable storage of training runs and their exported policy bundles.

Layout:
  <root>/runs/<run_id>/run.json     Run message (JSON), rewritten atomically as the run progresses
  <root>/runs/<run_id>/bundle.zip   the policy bundle (services.common.bundle), once the run succeeded
  <root>/runs/<run_id>/checkpoint.safetensors  the training state after the last completed phase or round
                                    (services.trainer.checkpoint), what a restarted trainer resumes from
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from google.protobuf import json_format

from plasma import files, ids
from plasma import log as plog
from plasma.server.errors import FailedPrecondition, NotFound
from plasma.trainer.v1 import trainer_pb2

log = plog.get(__name__)


class TrainerStore:
    def __init__(self, root: Path) -> None:
        self.runs_dir = root / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for run_dir in self.runs_dir.iterdir():
            files.remove_stale_temporaries(run_dir)
        # Counts run.json writes; WatchRun waits on it for the next change of any run.
        self._updates = 0
        self._updated = threading.Condition()

    def new_run_id(self) -> str:
        return f"run-{uuid.uuid4().hex[:12]}"

    def save_run(self, run: trainer_pb2.Run) -> None:
        files.write_bytes_atomic(self._run_dir(run.run_id) / "run.json", json_format.MessageToJson(run).encode())
        with self._updated:
            self._updates += 1
            self._updated.notify_all()

    def updates(self) -> int:
        """How many times a run was saved so far: pass it to `wait_for_update`."""
        with self._updated:
            return self._updates

    def wait_for_update(self, seen: int, timeout_s: float) -> None:
        """Returns once a run was saved after `updates()` returned `seen`, or after `timeout_s`."""
        with self._updated:
            self._updated.wait_for(lambda: self._updates != seen, timeout=timeout_s)

    def save_checkpoint(self, run_id: str, data: bytes) -> None:
        files.write_bytes_atomic(self._run_dir(run_id) / "checkpoint.safetensors", data)

    def checkpoint(self, run_id: str) -> bytes | None:
        """The run's last checkpoint, or None when it has none yet."""
        path = self._run_dir(run_id) / "checkpoint.safetensors"
        return path.read_bytes() if path.is_file() else None

    def save_bundle(self, run_id: str, bundle: bytes) -> None:
        files.write_bytes_atomic(self._run_dir(run_id) / "bundle.zip", bundle)

    def run(self, run_id: str) -> trainer_pb2.Run:
        path = self._run_dir(run_id) / "run.json"
        if not path.is_file():
            raise NotFound(f"run {run_id!r} does not exist; list runs with ListRuns")
        return json_format.Parse(path.read_text(), trainer_pb2.Run())

    def bundle(self, run_id: str) -> bytes:
        run = self.run(run_id)
        if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
            raise FailedPrecondition(
                f"run {run_id!r} is {trainer_pb2.RunState.Name(run.state)}; only a succeeded run can be exported"
            )
        return (self._run_dir(run_id) / "bundle.zip").read_bytes()

    def list_runs(self) -> list[trainer_pb2.Run]:
        runs = [self.run(p.name) for p in self.runs_dir.iterdir()
                if ids.is_valid_id(p.name) and (p / "run.json").is_file()]
        return sorted(runs, key=lambda r: r.create_time.ToNanoseconds())

    def interrupted_runs(self) -> list[trainer_pb2.Run]:
        """Runs still RUNNING on start-up: their process stopped, and they resume from their checkpoint."""
        return [run for run in self.list_runs() if run.state == trainer_pb2.RUN_STATE_RUNNING]

    def _run_dir(self, run_id: str) -> Path:
        # The servicer checks run ids where requests come in; this second check keeps any other caller's id (too
        # long, a separator, a leading dot) from reaching the filesystem.
        return self.runs_dir / ids.check_id("run_id", run_id)
