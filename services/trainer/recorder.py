"""The one writer of a run's record while it trains: checkpoints, history, and how it ended.

Training runs in its own thread (runs.py) while a cancel or a stop may end the run; a lock orders their
writes, and once the run has ended a late checkpoint or success from the training thread is
dropped, so that a cancelled run never turns RUNNING again (and so resumable) on disk, nor SUCCEEDED.
"""

from __future__ import annotations

import threading

from plasma.mbrl.algorithms.base import Progress
from plasma.mbrl.algorithms.distill import TrainState
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.trainer import checkpoint
from services.trainer.store import TrainerStore


def progress_to_proto(progress: Progress) -> trainer_pb2.TrainProgress:
    """The library's progress as the proto reports it: distillation's loss and planner agreement have fields of
    their own; model backprop's short-horizon return goes into `loss` negated (what it minimizes)."""
    figures = progress.figures
    return trainer_pb2.TrainProgress(
        phase=progress.phase, round=progress.round, total_rounds=progress.total_rounds,
        loss=figures.get("loss", -figures.get("short_return", 0.0)), imagined_return=progress.imagined_return,
        planner_agreement=figures.get("planner_agreement", 0.0), phantom_paths_used=progress.phantom_paths_used,
    )


class RunRecorder:
    def __init__(self, store: TrainerStore, run: trainer_pb2.Run) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.run = run

    def start(self) -> None:
        with self._lock:
            self._store.save_run(self.run)

    def checkpoint(self, state: TrainState) -> None:
        """Stores the state, then records its progress event as the run's checkpoint and in its history."""
        with self._lock:
            if self.run.state != trainer_pb2.RUN_STATE_RUNNING:
                return
            self._store.save_checkpoint(self.run.run_id, checkpoint.pack(state))
            event = progress_to_proto(state.progress)
            self.run.checkpoint.CopyFrom(event)
            self.run.history.append(event)
            self._store.save_run(self.run)

    def resume_at(self, state: TrainState) -> None:
        """Before resuming: a crash between writing the checkpoint and the run may have lost its event."""
        with self._lock:
            event = progress_to_proto(state.progress)
            if self.run.checkpoint != event:
                self.run.checkpoint.CopyFrom(event)
                self.run.history.append(event)
                self._store.save_run(self.run)

    def succeed(self, bundle: bytes, metrics: trainer_pb2.RunMetrics, policy: simulator_pb2.MlpPolicy) -> bool:
        """Stores the bundle, then marks the run SUCCEEDED with its metrics and merged policy (an MlpPolicy);
        dropped when the run has ended meanwhile (a cancel that came while the last phase finished)."""
        with self._lock:
            if self.run.state != trainer_pb2.RUN_STATE_RUNNING:
                return False
            self._store.save_bundle(self.run.run_id, bundle)
            self.run.metrics.CopyFrom(metrics)
            self.run.policy.CopyFrom(policy)
            self.run.state = trainer_pb2.RUN_STATE_SUCCEEDED
            self._store.save_run(self.run)
            return True

    def end(self, state: trainer_pb2.RunState, error: str) -> None:
        with self._lock:
            if self.run.state != trainer_pb2.RUN_STATE_RUNNING:
                return
            self.run.state = state
            self.run.error = error
            self._store.save_run(self.run)
