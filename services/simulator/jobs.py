"""Durable simulation jobs: StartSimulation appends a request's phantom paths to a log that any number of
subscribers read, each at its own pace.

Layout, under the simulator store:
  simulations/<simulation_id>/simulation.json   the Simulation message (state, error), rewritten atomically
                                                 on every state change
  simulations/<simulation_id>/log/              the paths, serialized PhantomPath messages (path_log.py)

Paths are deterministic for a request (rollout.simulate: the same seed gives the same paths), so a job
that was RUNNING when the simulator stopped resumes on the next start by regenerating its paths, checking
that those the log already holds come out byte for byte the same, and appending the rest.

Memory stays bounded whatever the subscribers do: the job holds at most one unflushed batch, and a
subscriber holds one reader (an open file and a position), never a queue. The writer wakes readers through
a Condition after each durable batch; a slow subscriber only ever slows itself. A job is back-pressured
only by its own disk writes.

How a subscription ends: SUCCEEDED => OK after the last path; FAILED => ABORTED carrying the job's error;
CANCELLED => CANCELLED, after every path the job had logged (those stay readable).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format

from plasma import files
from plasma import log as plog
from plasma.server import grpc_server
from plasma.server.errors import Aborted, Cancelled, InvalidArgument, NotFound, OutOfRange, ResourceExhausted
from plasma.simulator.v1 import simulator_pb2
from services.common import wire
from services.simulator import requests
from services.simulator.path_log import LogReader, LogTakenOver, PathLog
from services.simulator.store import SimulatorStore, new_id

log = plog.get(__name__)

RUNNING = simulator_pb2.SIMULATION_STATE_RUNNING
SUCCEEDED = simulator_pb2.SIMULATION_STATE_SUCCEEDED
FAILED = simulator_pb2.SIMULATION_STATE_FAILED
CANCELLED = simulator_pb2.SIMULATION_STATE_CANCELLED

# A batch is made durable (one fsync) and announced to subscribers at this many paths...
FLUSH_PATHS = 64
# ...or this long after its first path, whichever comes first, so slow (planner) paths still flow.
FLUSH_SECONDS = 0.5
# How often a waiting subscriber checks that its client is still there.
_POLL_SECONDS = 1.0
# How long CancelSimulation waits for the job to stop.
_CANCEL_WAIT_SECONDS = 10.0
_STATE_FILE = "simulation.json"


@dataclass
class _Job:
    simulation: simulator_pb2.Simulation  # as persisted: state and error; paths_logged is `logged`
    directory: Path
    logged: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)
    cancel: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> simulator_pb2.Simulation:
        with self.changed:
            message = simulator_pb2.Simulation()
            message.CopyFrom(self.simulation)
            message.paths_logged = self.logged
            return message


class SimulationJobs:
    """The simulations of one store: starts, runs (on `max_running` worker threads), resumes and serves them."""

    def __init__(
        self, root: Path, store: SimulatorStore, models: requests.ModelCache, max_running: int,
        execution: requests.Execution,
    ) -> None:
        self._root = root
        self._store = store
        self._models = models
        self._execution = execution
        self._max_running = max_running
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()  # guards _jobs and the running-count check in start()
        self._queue: queue.Queue[_Job] = queue.Queue()
        root.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(root)
        for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            job = self._load(directory)
            self._jobs[job.simulation.simulation_id] = job
            if job.simulation.state == RUNNING:
                log.info("simulation=%s resuming at path=%d", job.simulation.simulation_id, job.logged)
                self._queue.put(job)
        # Daemon workers: a stopping process must not wait for a job; RUNNING jobs resume on the next start.
        for number in range(max_running):
            threading.Thread(target=self._work, name=f"simulation-{number}", daemon=True).start()

    def _load(self, directory: Path) -> _Job:
        simulation = json_format.Parse((directory / _STATE_FILE).read_text(), simulator_pb2.Simulation())
        job = _Job(simulation=simulation, directory=directory)
        if simulation.state == RUNNING:
            job.logged = PathLog(directory / "log").count  # recovers a torn tail; the resumed job reopens it
        else:
            job.logged = simulation.paths_logged
        return job

    # RPCs

    def start(self, request: simulator_pb2.SimulateRequest) -> simulator_pb2.Simulation:
        # Validates everything before anything is stored; the generator is not started.
        requests.open_paths(request, self._store, self._models, self._execution)
        simulation = simulator_pb2.Simulation(
            simulation_id=new_id("sim"), request=request, state=RUNNING, create_time=grpc_server.now_timestamp()
        )
        with self._lock:
            running = sum(1 for job in self._jobs.values() if job.simulation.state == RUNNING)
            if running >= self._max_running:
                raise ResourceExhausted(
                    f"{running} simulations are running, the most this simulator runs at once "
                    "(PLASMA_SIMULATOR_MAX_SIMULATIONS); wait for one to end or cancel one"
                )
            directory = self._root / simulation.simulation_id
            files.write_dir_atomic(
                directory, lambda tmp: (tmp / _STATE_FILE).write_text(json_format.MessageToJson(simulation))
            )
            job = _Job(simulation=simulation, directory=directory)
            self._jobs[simulation.simulation_id] = job
        self._queue.put(job)
        log.info("simulation=%s started model=%s paths=%d", simulation.simulation_id, request.model_id,
                 request.num_paths)
        return job.snapshot()

    def get(self, simulation_id: str) -> simulator_pb2.Simulation:
        return self._job(simulation_id).snapshot()

    def list_all(self) -> list[simulator_pb2.Simulation]:
        with self._lock:
            jobs = list(self._jobs.values())
        return sorted((job.snapshot() for job in jobs), key=lambda s: s.create_time.ToNanoseconds())

    def cancel(self, simulation_id: str) -> simulator_pb2.Simulation:
        """Stops a running job at its next path and returns it once CANCELLED (or, when the current rollout
        batch takes longer than _CANCEL_WAIT_SECONDS, still RUNNING: it ends CANCELLED soon after). An ended
        job is returned as it is."""
        job = self._job(simulation_id)
        job.cancel.set()
        with job.changed:
            job.changed.wait_for(lambda: job.simulation.state != RUNNING, timeout=_CANCEL_WAIT_SECONDS)
        return job.snapshot()

    def subscribe(
        self, simulation_id: str, from_sequence: int, is_active: Callable[[], bool]
    ) -> Iterator[simulator_pb2.SubscribeResponse]:
        """The paths from `from_sequence` in order, then the job's end (see the module docstring)."""
        if from_sequence < 0:
            raise InvalidArgument(f"from_sequence={from_sequence} must not be negative (0 replays everything)")
        job = self._job(simulation_id)
        with job.changed:
            state, logged = job.simulation.state, job.logged
        limit = job.simulation.request.num_paths if state == RUNNING else logged
        if from_sequence > limit:
            raise OutOfRange(
                f"from_sequence={from_sequence} is past the end of simulation {simulation_id!r}, which "
                f"{'will have' if state == RUNNING else 'has'} {limit} paths; resume with the last received + 1"
            )
        return self._follow(job, from_sequence, is_active)

    def _follow(
        self, job: _Job, position: int, is_active: Callable[[], bool]
    ) -> Iterator[simulator_pb2.SubscribeResponse]:
        reader = LogReader(job.directory / "log", position)
        try:
            while True:
                with job.changed:
                    while job.logged <= reader.position and job.simulation.state == RUNNING and is_active():
                        job.changed.wait(_POLL_SECONDS)
                    available, state, error = job.logged, job.simulation.state, job.simulation.error
                if not is_active():
                    return
                for payload in reader.read(available):
                    response = simulator_pb2.SubscribeResponse()
                    response.path.MergeFromString(payload)
                    yield response
                if state != RUNNING:
                    break
        finally:
            reader.close()
        name = job.simulation.simulation_id
        if state == FAILED:
            raise Aborted(f"simulation {name!r} failed after {available} paths: {error}")
        if state == CANCELLED:
            raise Cancelled(f"simulation {name!r} was cancelled after {available} paths; start a new one for more")

    def _job(self, simulation_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get(simulation_id)
        if job is None:
            raise NotFound(f"simulation {simulation_id!r} does not exist; list them with ListSimulations")
        return job

    # Running

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except Exception:  # e.g. the state file could not be written: keep the worker for the next job
                log.exception("simulation=%s could not be ended cleanly", job.simulation.simulation_id)

    def _run(self, job: _Job) -> None:
        name = job.simulation.simulation_id
        try:
            path_log = PathLog(job.directory / "log")
        except OSError as exc:
            self._end(job, FAILED, f"cannot open the path log: {exc}")
            return
        try:
            with job.changed:
                job.logged = path_log.count
            self._write_paths(job, path_log)
            path_log.check_owner()  # a writer left over from a stopped server must not end the job
        except LogTakenOver:
            log.info("simulation=%s handed over to a newer writer of its log", name)
            return
        except Exception as exc:
            log.exception("simulation=%s failed", name)
            self._end(job, FAILED, f"{type(exc).__name__}: {exc}")
            return
        finally:
            path_log.close()
        self._end(job, CANCELLED if job.cancel.is_set() else SUCCEEDED, "")

    def _write_paths(self, job: _Job, path_log: PathLog) -> None:
        already = path_log.count
        replayed = LogReader(path_log.directory, 0) if already else None
        paths = requests.open_paths(job.simulation.request, self._store, self._models, self._execution)
        batch: list[bytes] = []
        batch_started = 0.0
        try:
            for index, path in enumerate(paths):
                if job.cancel.is_set():
                    break
                payload = wire.path_to_proto(path, index).SerializeToString()
                if index < already:
                    assert replayed is not None
                    if next(replayed.read(index + 1)) != payload:
                        raise RuntimeError(
                            f"path {index} regenerated on resume differs from the logged one; the model, the "
                            "simulator code or its device (PLASMA_SIMULATOR_DEVICE) changed since the job started, "
                            "start a new simulation"
                        )
                    continue
                if not batch:
                    batch_started = time.monotonic()
                batch.append(payload)
                if len(batch) >= FLUSH_PATHS or time.monotonic() - batch_started >= FLUSH_SECONDS:
                    self._flush(job, path_log, batch)
                    batch = []
            self._flush(job, path_log, batch)
        finally:
            if replayed is not None:
                replayed.close()

    @staticmethod
    def _flush(job: _Job, path_log: PathLog, batch: list[bytes]) -> None:
        if not batch:
            return
        count = path_log.append(batch)
        with job.changed:
            job.logged = count
            job.changed.notify_all()

    def _end(self, job: _Job, state: simulator_pb2.SimulationState, error: str) -> None:
        with job.changed:
            ended = simulator_pb2.Simulation()
            ended.CopyFrom(job.simulation)
            ended.state = state
            ended.error = error
            ended.paths_logged = job.logged
            files.write_bytes_atomic(job.directory / _STATE_FILE, json_format.MessageToJson(ended).encode())
            job.simulation = ended
            job.changed.notify_all()
        log.info("simulation=%s %s paths=%d %s", ended.simulation_id, simulator_pb2.SimulationState.Name(state),
                 ended.paths_logged, error)
