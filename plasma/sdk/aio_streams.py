"""The asyncio client's long calls, carried on across a broken stream as the sync client's are: Train followed
to the same run with WatchRun (plasma.sdk.training), a simulation's paths each once and in order
(plasma.subscription). The same rules decide what is worth another try, with the same backoff
(plasma.reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import grpc

from plasma import log as plog
from plasma.reconnect import DEFAULT_RECONNECT, Reconnect, retryable
from plasma.sdk.training import Followed, run_id_of
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc

log = plog.get(__name__)


async def wait(reconnect: Reconnect, channel: grpc.aio.Channel, error: grpc.RpcError, failures: int,
               deadline: float) -> None:
    """Reconnect.wait for asyncio: sleeps the backoff, then waits (boundedly) for the channel to connect."""
    await asyncio.sleep(reconnect.backoff(error, failures, deadline))
    # On a timeout the next call fails fast with UNAVAILABLE and counts as another failure.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(channel.channel_ready(),
                               max(min(reconnect.connect_seconds, deadline - time.monotonic()), 0.001))


def remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


async def train_to_end(stub: trainer_pb2_grpc.TrainerServiceAsyncStub, channel: grpc.aio.Channel,
                       request: trainer_pb2.TrainRequest, deadline_s: float,
                       on_progress: Callable[[trainer_pb2.TrainProgress], None] | None = None,
                       reconnect: Reconnect = DEFAULT_RECONNECT) -> trainer_pb2.Run:
    """plasma.sdk.training.train_to_end for asyncio: each progress event once, in order, across reconnections."""
    deadline = time.monotonic() + deadline_s
    followed = Followed(on_progress)
    call = stub.Train(request, timeout=deadline_s)
    try:
        async for message in call:
            if (run := followed.trained(message)) is not None:
                return run
        raise RuntimeError("the Train stream ended without the finished run")
    except grpc.RpcError as error:
        run_id = run_id_of(await call.initial_metadata())
        if not run_id or not retryable(error):
            raise
        log.info("run=%s: the Train stream broke (%s); following the run with WatchRun", run_id, error.code())
        last: grpc.RpcError = error
    failures = 1
    while True:
        await wait(reconnect, channel, last, failures, deadline)
        followed.watch_started()
        try:
            async for watched in stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id),
                                               timeout=remaining(deadline)):
                failures = 0
                if (run := followed.watched(watched)) is not None:
                    return run
            raise RuntimeError(f"WatchRun({run_id}) ended without the finished run")
        except grpc.RpcError as broken:
            if not retryable(broken):
                raise
            last, failures = broken, failures + 1
            log.info("run=%s: WatchRun broke (%s); trying again", run_id, broken.code())


async def simulation_paths(channel: grpc.aio.Channel, simulation_id: str, from_sequence: int, deadline_s: float,
                           reconnect: Reconnect = DEFAULT_RECONNECT) -> AsyncIterator[simulator_pb2.PhantomPath]:
    """plasma.subscription.DurablePaths.follow for asyncio: the paths from `from_sequence` until the job ends,
    resubscribing from the next one after a broken stream."""
    stub: simulator_pb2_grpc.SimulatorServiceAsyncStub = simulator_pb2_grpc.SimulatorServiceStub(channel)
    deadline = time.monotonic() + deadline_s
    next_sequence, failures = from_sequence, 0
    while True:
        call = stub.Subscribe(simulator_pb2.SubscribeRequest(simulation_id=simulation_id,
                                                             from_sequence=next_sequence),
                              timeout=remaining(deadline))
        try:
            async for response in call:
                if response.path.index != next_sequence:
                    raise RuntimeError(f"simulation {simulation_id} sent path {response.path.index}, "
                                       f"expected {next_sequence}")
                next_sequence, failures = next_sequence + 1, 0
                yield response.path
            return
        except grpc.RpcError as error:
            if not retryable(error):
                raise
            failures += 1
            log.info("simulation=%s resubscribing from=%d after %s", simulation_id, next_sequence, error.code())
            await wait(reconnect, channel, error, failures, deadline)
        finally:
            call.cancel()
