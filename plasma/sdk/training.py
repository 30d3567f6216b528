"""Train, followed to its end: the Train stream while it lasts, then WatchRun after the trainer restarted or the
connection broke. The run goes on in the trainer (or resumes there from its last checkpoint after a restart), so
the client waits for the trainer to come back and follows the same run; no new run is started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


def train_to_end(stub: trainer_pb2_grpc.TrainerServiceStub, channel: grpc.Channel,
                 request: trainer_pb2.TrainRequest, deadline_s: float,
                 on_progress: Callable[[trainer_pb2.TrainProgress], None] | None = None,
                 reconnect: Reconnect = DEFAULT_RECONNECT) -> trainer_pb2.Run:
    """Trains and returns the succeeded run; `on_progress` hears each progress event once, in order, across
    reconnections. A broken Train stream before the run existed is raised: there is nothing to follow."""
    deadline = time.monotonic() + deadline_s
    report = on_progress or (lambda _: None)
    stream = stub.Train(request, timeout=deadline_s)
    seen = 0
    try:
        for message in stream:
            if message.HasField("run"):
                return message.run
            seen += 1
            report(message.progress)
        raise RuntimeError("the Train stream ended without the finished run")
    except grpc.RpcError as error:
        run_id = dict(stream.initial_metadata() or ()).get(metadata.RUN_ID, "")
        if not run_id or not retryable(error):
            raise
        log.info("run=%s: the Train stream broke (%s); following the run with WatchRun", run_id, error.code())
        reconnect.wait(channel, error, 1, deadline)
    return _watch(stub, channel, str(run_id), seen, deadline, report, reconnect)


def _watch(stub: trainer_pb2_grpc.TrainerServiceStub, channel: grpc.Channel, run_id: str, seen: int,
           deadline: float, report: Callable[[trainer_pb2.TrainProgress], None], reconnect: Reconnect
           ) -> trainer_pb2.Run:
    failures = 1
    while True:
        try:
            for index, event in enumerate(_watched(stub, run_id, deadline)):
                failures = 0
                if isinstance(event, trainer_pb2.Run):
                    if event.state != trainer_pb2.RUN_STATE_SUCCEEDED:
                        raise RunNotSucceeded(event)
                    return event
                if index >= seen:  # WatchRun replays the run's history from its first event
                    seen += 1
                    report(event)
            raise RuntimeError(f"WatchRun({run_id}) ended without the finished run")
        except grpc.RpcError as error:
            if not retryable(error):
                raise
            failures += 1
            log.info("run=%s: WatchRun broke (%s); trying again", run_id, error.code())
            reconnect.wait(channel, error, failures, deadline)


def _watched(stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str,
             deadline: float) -> Iterator[trainer_pb2.TrainProgress | trainer_pb2.Run]:
    stream = stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id),
                           timeout=max(deadline - time.monotonic(), 0.001))
    for message in stream:
        yield message.run if message.HasField("run") else message.progress
