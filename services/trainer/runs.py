"""Every training run's lifecycle in one place: start (one thread per run), resume after a restart, cancel, and
stop (the trainer shutting down: its runs stay RUNNING and resume on its next start).

A run's training thread sees phantom paths only through a `_RunSource`, which ends the training at the next path
once the run is told to stop and starts no simulation after that. Telling a run to stop also aborts its phantom
source, which cancels in the simulator every simulation the run started and has not finished (plasma.subscription).
The Train RPC only follows a run (`Handle.events`) and asks for the cancel when its client goes away.

A cancel, in this order: the training thread is told to stop (it starts no simulation from then on), the
simulations the run started are cancelled, and the run is marked CANCELLED. So a run that reads CANCELLED has
started every simulation it ever will. The training thread itself ends at its next check (a phantom path, a
progress event, the start of a simulation); what it records after the mark is dropped (recorder.py).
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import torch

from plasma import log as plog
from plasma.mbrl import tasks
from plasma.mbrl.algorithms import audit_filter, backprop, distill
from plasma.mbrl.algorithms.base import PolicyIO, Progress, TrainResult, mlp_weights_of
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.types import MlpWeights, PhantomPath
from plasma.server.errors import FailedPrecondition
from plasma.spaces import EnvSpec
from plasma.subscription import Aborted
from plasma.trainer.v1 import trainer_pb2
from services.common import bundle, wire
from services.trainer import checkpoint, configs
from services.trainer.config import Config
from services.trainer.phantom_source import GrpcModelSource, GrpcPhantomSource
from services.trainer.recorder import RunRecorder
from services.trainer.store import TrainerStore

log = plog.get(__name__)

# How long a resumed run waits for the simulator to come up.
_SIMULATOR_WAIT_S = 300.0
_END = object()


class RunStopped(Exception):
    """The run was told to stop (cancelled, or the trainer is stopping): raised in its training thread."""


@dataclass
class Start:
    """What a run trains: its record (RUNNING), plan, policy I/O, a base policy to adapt, a checkpoint to go on
    from."""

    run: trainer_pb2.Run
    plan: configs.Plan
    io: PolicyIO
    base: distill.BasePolicy | None = None
    resume_from: distill.TrainState | None = None
    resumed: bool = False  # started again after a trainer restart (with or without a checkpoint)


@dataclass
class Handle:
    """A run as its Train stream follows it."""

    run_id: str
    _events: queue.Queue[Any] = field(default_factory=queue.Queue)
    _done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_reason: str = ""
    _error: BaseException | None = None
    _recorder: RunRecorder | None = None
    _source: GrpcPhantomSource | None = None
    # Orders the training thread attaching its source against a stop, so that no source escapes the abort.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> Iterator[Progress]:
        """The run's progress events as they come, until its training thread ends."""
        while (event := self._events.get()) is not _END:
            yield event

    def outcome(self) -> trainer_pb2.Run:
        """The run's record once its thread ended; re-raises the error that failed it."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._recorder is not None
        return self._recorder.run

    def _report(self, progress: Progress) -> None:
        self._check()
        self._events.put(progress)

    def _check(self) -> None:
        """In the training thread: ends the training once the run was told to stop."""
        if self._stop.is_set():
            raise RunStopped(self._stop_reason)

    def _attach(self, source: GrpcPhantomSource) -> None:
        """In the training thread: the source a stop must abort; ends the training if the stop came first."""
        with self._lock:
            self._check()
            self._source = source

    def _halt(self, reason: str) -> bool:
        """Tells the training thread to stop, then aborts its source (blocking: it cancels the run's
        simulations in the simulator). False when the run had already been told."""
        with self._lock:
            if self._stop.is_set():
                return False
            self._stop_reason = reason
            self._stop.set()
            source = self._source
        if source is not None:
            source.abort()
        return True


class _RunSource:
    """The run's phantom source, ending its training at the next path once the run is told to stop."""

    def __init__(self, source: GrpcPhantomSource, handle: Handle) -> None:
        self._source = source
        self._handle = handle

    def __getattr__(self, name: str) -> Any:  # model and task of a GrpcModelSource
        return getattr(self._source, name)

    def simulate(self, *, policy: MlpWeights | PlannerConfig | None, num_paths: int, horizon: int, seed: int,
                 start_states: str, label_with_planner: PlannerConfig | None,
                 reward_source: str) -> Iterator[PhantomPath]:
        self._handle._check()
        try:
            for path in self._source.simulate(policy=policy, num_paths=num_paths, horizon=horizon, seed=seed,
                                              start_states=start_states, label_with_planner=label_with_planner,
                                              reward_source=reward_source):
                if self._handle._stop.is_set():
                    raise RunStopped(self._handle._stop_reason)
                yield path
        except (Aborted, grpc.RpcError) as exc:
            if self._handle._stop.is_set():  # the abort's own CANCELLED, not a failure
                raise RunStopped(self._handle._stop_reason) from exc
            raise


class Runs:
    def __init__(self, store: TrainerStore, simulator: grpc.Channel, config: Config) -> None:
        self._store = store
        self._simulator = simulator
        self._config = config
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[str, tuple[Handle, threading.Thread]] = {}

    # Starting and resuming

    def start(self, start: Start) -> Handle:
        """Records the run and starts training it in its own thread."""
        handle = Handle(start.run.run_id)
        handle._recorder = RunRecorder(self._store, start.run)
        handle._recorder.start()
        # In the caller's context: a Train call's trace span stays the parent of the run's calls to the simulator.
        thread = threading.Thread(target=contextvars.copy_context().run, args=(self._train, start, handle),
                                  name=f"train-{start.run.run_id}", daemon=True)
        with self._lock:
            self._active[start.run.run_id] = (handle, thread)
        thread.start()
        return handle

    def resume_interrupted(self) -> None:
        """Resumes, one after another in a background thread, the runs that were RUNNING when the trainer
        stopped, each from its last checkpoint (or from the start when it had none)."""
        threading.Thread(target=self._resume_all, name="resume-runs", daemon=True).start()

    def _resume_all(self) -> None:
        for run in self._store.interrupted_runs():
            if self._stopping.is_set():
                return
            try:
                start = self._resumed(run)
            except Exception as exc:
                RunRecorder(self._store, run).end(trainer_pb2.RUN_STATE_FAILED,
                                                  f"resuming after a trainer restart failed: {_describe(exc)}")
                log.warning("run=%s failed to resume: %s", run.run_id, exc)
                continue
            if not self._simulator_ready():
                return
            handle = self.start(start)
            handle._done.wait()

    def _resumed(self, run: trainer_pb2.Run) -> Start:
        plan = configs.plan(run.config, PolicyIO.of(EnvSpec.from_proto(run.env_spec)), run.env_spec.env_id,
                            bool(run.base_run_id), run.HasField("task"))
        if plan.algorithm == configs.BACKPROP:
            raise FailedPrecondition("ALGORITHM_MODEL_BACKPROP keeps no checkpoints to resume from; train again")
        base = self.base_policy(run.base_run_id) if run.base_run_id else None
        data = self._store.checkpoint(run.run_id)
        state = checkpoint.unpack(data) if data is not None else None
        log.info("run=%s resuming after a restart checkpoint=%s/%d", run.run_id, run.checkpoint.phase or "-",
                 run.checkpoint.round)
        return Start(run, plan, PolicyIO.of(EnvSpec.from_proto(run.env_spec)), base, state, resumed=True)

    def _simulator_ready(self) -> bool:
        """Waits for the simulator (it may be starting with the trainer) while the trainer is not stopping."""
        deadline = time.monotonic() + _SIMULATOR_WAIT_S
        while not self._stopping.is_set():
            try:
                grpc.channel_ready_future(self._simulator).result(timeout=1.0)
                return True
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    log.warning("simulator not reachable after %.0f s: interrupted runs stay RUNNING",
                                _SIMULATOR_WAIT_S)
                    return False
        return False

    def base_policy(self, base_run_id: str) -> distill.BasePolicy:
        policy = bundle.unpack(self._store.bundle(base_run_id))
        return distill.BasePolicy(policy.spec, policy.base_state)

    # Stopping

    def cancel(self, run_id: str, reason: str) -> None:
        """Stops the run, cancels its simulations and marks it CANCELLED (see the module docstring), in a thread
        of its own: this returns at once, as gRPC's callbacks must. A no-op for a run that ended, or while the
        trainer is stopping (its runs then stay RUNNING, to resume)."""
        if self._stopping.is_set():
            return
        with self._lock:
            active = self._active.get(run_id)
        if active is not None:
            threading.Thread(target=self._cancel, args=(active[0], reason), name=f"cancel-{run_id}",
                             daemon=True).start()

    def _cancel(self, handle: Handle, reason: str) -> None:
        if handle._halt(reason):
            assert handle._recorder is not None
            handle._recorder.end(trainer_pb2.RUN_STATE_CANCELLED, reason)
            log.info("run=%s cancelled: %s", handle.run_id, reason)

    def stop(self) -> None:
        """The trainer is stopping: every run ends at its next phantom path or progress event and stays RUNNING."""
        self._stopping.set()
        with self._lock:
            active = list(self._active.values())
        for handle, _ in active:
            handle._halt("the trainer is stopping; the run resumes on its next start")

    def join(self, timeout_s: float) -> None:
        """Waits up to `timeout_s` for the training threads to end (one still inside torch or gRPC when the
        interpreter exits can abort the process)."""
        with self._lock:
            active = list(self._active.values())
        deadline = time.monotonic() + timeout_s
        for handle, thread in active:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("run=%s: training thread still running after %.0f s; exiting anyway", handle.run_id,
                            timeout_s)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # Training

    def _train(self, start: Start, handle: Handle) -> None:
        recorder = handle._recorder
        assert recorder is not None
        run = start.run
        started = time.monotonic()
        try:
            result = self._algorithm(start, handle)(handle._report)
            self._succeed(recorder, result, started)
        except RunStopped:
            if self._stopping.is_set():
                log.info("run=%s left for the next start to resume: the trainer is stopping", run.run_id)
            else:
                recorder.end(trainer_pb2.RUN_STATE_CANCELLED, handle._stop_reason)
        except Exception as exc:
            failure = _describe(exc)
            recorder.end(trainer_pb2.RUN_STATE_FAILED,
                         f"resuming after a trainer restart failed: {failure}" if start.resumed else failure)
            handle._error = _as_status(exc)
        finally:
            if recorder.run.state not in (trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_RUNNING):
                log.warning("run=%s ended state=%s error=%s", run.run_id,
                            trainer_pb2.RunState.Name(recorder.run.state), recorder.run.error)
            with self._lock:
                self._active.pop(run.run_id, None)
            handle._done.set()
            handle._events.put(_END)

    def _algorithm(self, start: Start, handle: Handle) -> Callable[[Callable[[Progress], None]], TrainResult]:
        run, plan, recorder = start.run, start.plan, handle._recorder
        assert recorder is not None
        task = run.task if run.HasField("task") else None
        if plan.algorithm == configs.BACKPROP:
            assert plan.backprop is not None
            scoring = tasks.task_for(run.env_spec.env_id) if plan.backprop.reward_source == "task" else None
            source: GrpcPhantomSource = GrpcModelSource(self._simulator, run.model_id,
                                                        self._config.simulate_deadline_seconds, scoring)
            handle._attach(source)
            config = plan.backprop
            return lambda report: backprop.train(_RunSource(source, handle), start.io, config, report,
                                                 device=self._config.device)
        source = GrpcPhantomSource(self._simulator, run.model_id, self._config.simulate_deadline_seconds, task=task)
        handle._attach(source)
        if start.resume_from is not None:
            recorder.resume_at(start.resume_from)
        return lambda report: distill.train(_RunSource(source, handle), start.io, plan.distill, report,
                                            base=start.base, resume_from=start.resume_from,
                                            on_checkpoint=recorder.checkpoint, device=self._config.device)

    def _succeed(self, recorder: RunRecorder, result: TrainResult, started: float) -> None:
        run = recorder.run
        known = set(trainer_pb2.RunMetrics.DESCRIPTOR.fields_by_name)
        fields: dict[str, Any] = {**{k: v for k, v in result.metrics.items() if k in known},
                                  "training_seconds": time.monotonic() - started}
        metrics = trainer_pb2.RunMetrics(**fields)
        policy = wire.mlp_to_proto(mlp_weights_of(result.peft_model))
        if recorder.succeed(_bundle_bytes(run, result), metrics, policy):
            log.info("run=%s succeeded imagined_return=%.1f", run.run_id, run.metrics.imagined_return)


def _as_status(exc: Exception) -> Exception:
    """How a run's failure answers its Train stream: nothing trustworthy to learn from is the caller's
    precondition (FAILED_PRECONDITION, with what to do), not an internal error."""
    if isinstance(exc, audit_filter.NothingTrusted):
        return FailedPrecondition(str(exc))
    return exc


def _describe(exc: Exception) -> str:
    """A failure as a run's error says it: a gRPC status by its code and details, else the exception."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def _bundle_bytes(run: trainer_pb2.Run, result: TrainResult) -> bytes:
    provenance = {"run_id": run.run_id, "model_id": run.model_id, "torch": torch.__version__,
                  "numpy": np.__version__}
    if run.base_run_id:
        provenance["base_run_id"] = run.base_run_id
    return bundle.pack(bundle.PolicyBundle(
        spec=result.spec,
        base_state=result.base_state,
        adapter_files=bundle.adapter_files_of(result.peft_model),
        parity_observations=result.held_out_states,
        provenance=provenance,
    ))
