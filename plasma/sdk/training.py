"""Train, followed to its end: the Train stream while it lasts, then WatchRun after the trainer restarted or the
connection broke. The run goes on in the trainer (or resumes there from its last checkpoint after a restart), so
the client waits for the trainer to come back and follows the same run; no new run is started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import grpc

from plasma import log as plog
from plasma import metadata
from plasma.reconnect import DEFAULT_RECONNECT, Reconnect, retryable
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc

log = plog.get(__name__)


class RunNotSucceeded(RuntimeError):
    """The followed run ended FAILED or CANCELLED; `run` says why (run.error)."""

    def __init__(self, run: trainer_pb2.Run) -> None:
        super().__init__(f"run {run.run_id} ended {trainer_pb2.RunState.Name(run.state)}: {run.error}")
        self.run = run


class Followed:
    """What a follower of one run has reported, so that each progress event is reported once, in order, across
    the Train stream and any number of WatchRun replays; shared by the sync and the asyncio follower."""

    def __init__(self, on_progress: Callable[[trainer_pb2.TrainProgress], None] | None) -> None:
        self._report = on_progress or (lambda _: None)
        self._seen = 0
        self._index = 0  # of the next event in the WatchRun stream being read

    def trained(self, message: trainer_pb2.TrainResponse) -> trainer_pb2.Run | None:
        """One Train message: the finished run, or None after reporting its progress."""
        if message.HasField("run"):
            return message.run
        self._seen += 1
        self._report(message.progress)
        return None

    def watch_started(self) -> None:
        self._index = 0

    def watched(self, message: trainer_pb2.WatchRunResponse) -> trainer_pb2.Run | None:
        """One WatchRun message: the succeeded run (RunNotSucceeded for another end), or None after reporting its
        progress unless reported before (WatchRun replays the run's history from its first event)."""
        if message.HasField("run"):
            if message.run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
                raise RunNotSucceeded(message.run)
            return message.run
        if self._index >= self._seen:
            self._seen += 1
            self._report(message.progress)
        self._index += 1
        return None


def run_id_of(initial_metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The run a Train call created (its initial metadata), or "" when it ended before the run existed."""
    return str(dict(initial_metadata or ()).get(metadata.RUN_ID, ""))


def train_to_end(stub: trainer_pb2_grpc.TrainerServiceStub, channel: grpc.Channel,
                 request: trainer_pb2.TrainRequest, deadline_s: float,
                 on_progress: Callable[[trainer_pb2.TrainProgress], None] | None = None,
                 reconnect: Reconnect = DEFAULT_RECONNECT) -> trainer_pb2.Run:
    """Trains and returns the succeeded run; `on_progress` hears each progress event once, in order, across
    reconnections. A broken Train stream before the run existed is raised: there is nothing to follow."""
    deadline = time.monotonic() + deadline_s
    followed = Followed(on_progress)
    stream = stub.Train(request, timeout=deadline_s)
    try:
        for message in stream:
            if (run := followed.trained(message)) is not None:
                return run
        raise RuntimeError("the Train stream ended without the finished run")
    except grpc.RpcError as error:
        run_id = run_id_of(stream.initial_metadata())
        if not run_id or not retryable(error):
            raise
        log.info("run=%s: the Train stream broke (%s); following the run with WatchRun", run_id, error.code())
        reconnect.wait(channel, error, 1, deadline)
    return _watch(stub, channel, run_id, followed, deadline, reconnect)


def _watch(stub: trainer_pb2_grpc.TrainerServiceStub, channel: grpc.Channel, run_id: str, followed: Followed,
           deadline: float, reconnect: Reconnect) -> trainer_pb2.Run:
    failures = 1
    while True:
        followed.watch_started()
        try:
            for message in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id),
                                         timeout=max(deadline - time.monotonic(), 0.001)):
                failures = 0
                if (run := followed.watched(message)) is not None:
                    return run
            raise RuntimeError(f"WatchRun({run_id}) ended without the finished run")
        except grpc.RpcError as error:
            if not retryable(error):
                raise
            failures += 1
            log.info("run=%s: WatchRun broke (%s); trying again", run_id, error.code())
            reconnect.wait(channel, error, failures, deadline)
