"""Phantom paths through a durable simulation: StartSimulation, then Subscribe, resuming after a broken stream.

The simulator logs a simulation's paths with dense sequence numbers, so a consumer that lost its stream
(the simulator restarted, the connection was reset, a deadline on the way expired) subscribes again from
the last sequence number it received + 1 and gets every path exactly once, in order. The trainer reads its
phantom paths this way; so can any client (PlasmaClient.simulation_paths).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc

from plasma import channels
from plasma import log as plog
from plasma.reconnect import DEFAULT_RECONNECT, Reconnect, retryable
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc

log = plog.get(__name__)

_CANCEL_DEADLINE_S = 2.0


class Aborted(Exception):
    """The consumer called DurablePaths.abort: its simulation is cancelled and no more paths come."""


class DurablePaths:
    """`for path in DurablePaths(...).paths(request)`: the request's paths, each once, in order.

    `abort` (from another thread) ends it for good: no simulation starts after it, and every one it started
    that is not known to have ended is cancelled before `abort` returns.
    """

    def __init__(
        self, channel: grpc.Channel, deadline_seconds: float, reconnect: Reconnect = DEFAULT_RECONNECT
    ) -> None:
        self._channel = channel
        self._stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        self._deadline_seconds = deadline_seconds
        self._reconnect = reconnect
        self.reconnects = 0  # resubscriptions after a broken stream, over this object's life
        # What `abort` ends, guarded by the lock (abort comes from another thread): the stream being read,
        # a StartSimulation in flight, and the simulations started and not seen to end.
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        self._starting = threading.Condition(self._lock)
        self._start_in_flight = False
        self._live: set[str] = set()
        self._stream: grpc.Call | None = None

    def abort(self) -> None:
        """Ends the stream being read at once, lets a StartSimulation in flight return, then cancels every
        simulation started and not seen to end. Every later call raises Aborted."""
        with self._lock:
            self._aborted.set()
            stream = self._stream
        if stream is not None:
            stream.cancel()
        with self._lock:
            # Bounded: one StartSimulation attempt has a unary deadline, and the retries stop on abort.
            self._starting.wait_for(lambda: not self._start_in_flight)
            live, self._live = self._live, set()
        for simulation_id in live:
            self._cancel_quietly(simulation_id)

    def _check_aborted(self) -> None:
        if self._aborted.is_set():
            raise Aborted("the consumer aborted: no more phantom paths")

    def _start(self, request: simulator_pb2.SimulateRequest, deadline: float) -> str:
        """Starts the simulation unless aborted; abort() waits for it and cancels it, so none outlives an abort."""
        with self._lock:
            self._check_aborted()
            self._start_in_flight = True
        simulation_id = ""
        try:
            simulation_id = self._call_with_retries(
                lambda: self._stub.StartSimulation(
                    simulator_pb2.StartSimulationRequest(request=request),
                    timeout=min(channels.UNARY_DEADLINE_S, self._remaining(deadline)),
                ).simulation.simulation_id,
                deadline,
            )
            return simulation_id
        finally:
            with self._lock:
                self._start_in_flight = False
                if simulation_id:
                    self._live.add(simulation_id)
                self._starting.notify_all()

    def _forget(self, simulation_id: str) -> bool:
        """Takes the simulation off the live set; False when abort() already took it (and cancels it)."""
        with self._lock:
            if simulation_id not in self._live:
                return False
            self._live.discard(simulation_id)
            return True

    def paths(self, request: simulator_pb2.SimulateRequest) -> Iterator[simulator_pb2.PhantomPath]:
        deadline = time.monotonic() + self._deadline_seconds
        simulation_id = self._start(request, deadline)
        try:
            yield from self._follow(simulation_id, deadline)
        except BaseException:
            # Aborted, failed, or the consumer has enough (GeneratorExit): stop computing paths for it.
            if self._forget(simulation_id):
                self._cancel_quietly(simulation_id)
            raise
        else:
            self._forget(simulation_id)  # it ended and every path came

    def follow(self, simulation_id: str, from_sequence: int = 0) -> Iterator[simulator_pb2.PhantomPath]:
        """The paths of a simulation started earlier (by anyone), from `from_sequence` on, until it ends."""
        return self._follow(simulation_id, time.monotonic() + self._deadline_seconds, from_sequence)

    def _follow(self, simulation_id: str, deadline: float,
                from_sequence: int = 0) -> Iterator[simulator_pb2.PhantomPath]:
        self._check_aborted()
        next_sequence = from_sequence
        failures = 0
        while True:
            stream = self._stub.Subscribe(
                simulator_pb2.SubscribeRequest(simulation_id=simulation_id, from_sequence=next_sequence),
                timeout=self._remaining(deadline),
            )
            with self._lock:
                self._stream = stream
            if self._aborted.is_set():
                stream.cancel()
            try:
                for response in stream:
                    if response.path.index != next_sequence:
                        raise RuntimeError(
                            f"simulation {simulation_id} sent path {response.path.index}, expected {next_sequence}"
                        )
                    next_sequence += 1
                    failures = 0
                    yield response.path
                return
            except grpc.RpcError as error:
                self._check_aborted()
                if not retryable(error):
                    raise
                failures += 1
                self._reconnect.wait(self._channel, error, failures, deadline, self._aborted)
                self.reconnects += 1
                log.info("simulation=%s resubscribing from=%d after %s", simulation_id, next_sequence,
                         error.code())
            finally:
                stream.cancel()
                with self._lock:
                    self._stream = None

    def _cancel_quietly(self, simulation_id: str) -> None:
        # The simulator flags the job the moment the request arrives; waiting for the job to stop (the reply)
        # would only hold up a consumer that may be shutting down.
        try:
            self._stub.CancelSimulation(
                simulator_pb2.CancelSimulationRequest(simulation_id=simulation_id), timeout=_CANCEL_DEADLINE_S
            )
        except grpc.RpcError as error:
            log.info("simulation=%s not cancelled: %s", simulation_id, error.code())

    def _call_with_retries(self, call: Callable[[], str], deadline: float) -> str:
        failures = 0
        while True:
            try:
                return call()
            except grpc.RpcError as error:
                if not retryable(error):
                    raise
                failures += 1
                self._reconnect.wait(self._channel, error, failures, deadline, self._aborted)
                self._check_aborted()

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)
