"""Durable storage of training runs and their exported policy bundles.

Layout:
  <root>/runs/<run_id>/run.json     Run message (JSON), rewritten atomically as the run progresses
  <root>/runs/<run_id>/bundle.zip   the policy bundle (services.common.bundle), once the run succeeded
"""

from __future__ import annotations

import uuid
from pathlib import Path

from google.protobuf import json_format

from plasma.core import files
from plasma.core import logging as plog
from plasma.core.errors import FailedPrecondition, NotFound
from plasma.trainer.v1 import trainer_pb2

log = plog.get(__name__)


class TrainerStore:
    def __init__(self, root: Path) -> None:
        self.runs_dir = root / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for run_dir in self.runs_dir.iterdir():
            files.remove_stale_temporaries(run_dir)
        self._fail_interrupted_runs()

    def new_run_id(self) -> str:
        return f"run-{uuid.uuid4().hex[:12]}"

    def save_run(self, run: trainer_pb2.Run) -> None:
        files.write_bytes_atomic(self.runs_dir / run.run_id / "run.json", json_format.MessageToJson(run).encode())

    def save_bundle(self, run_id: str, bundle: bytes) -> None:
        files.write_bytes_atomic(self.runs_dir / run_id / "bundle.zip", bundle)

    def run(self, run_id: str) -> trainer_pb2.Run:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise NotFound(f"run id {run_id!r} is not a valid id")
        path = self.runs_dir / run_id / "run.json"
        if not path.is_file():
            raise NotFound(f"run {run_id!r} does not exist; list runs with ListRuns")
        return json_format.Parse(path.read_text(), trainer_pb2.Run())

    def bundle(self, run_id: str) -> bytes:
        run = self.run(run_id)
        if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
            raise FailedPrecondition(
                f"run {run_id!r} is {trainer_pb2.RunState.Name(run.state)}; only a succeeded run can be exported"
            )
        return (self.runs_dir / run_id / "bundle.zip").read_bytes()

    def list_runs(self) -> list[trainer_pb2.Run]:
        runs = [self.run(p.name) for p in self.runs_dir.iterdir() if (p / "run.json").is_file()]
        return sorted(runs, key=lambda r: r.create_time.ToNanoseconds())

    def _fail_interrupted_runs(self) -> None:
        # A run still RUNNING on start-up lost its process; say so rather than leave it hanging.
        for run in self.list_runs():
            if run.state == trainer_pb2.RUN_STATE_RUNNING:
                run.state = trainer_pb2.RUN_STATE_FAILED
                run.error = "the trainer stopped while this run was in progress; start a new run"
                self.save_run(run)
                log.warning("run=%s marked failed: interrupted by a restart", run.run_id)
