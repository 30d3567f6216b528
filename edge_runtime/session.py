"""A servable packet: one warm onnxruntime session (plus an adapter, for adapter packets) and the checks
every observation passes before onnxruntime sees it."""

from __future__ import annotations

import datetime
import math
import struct
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime import self_test
from plasma import packet
from plasma.common.v1 import common_pb2
from plasma.server.errors import InvalidArgument

_ITEMSIZE = {common_pb2.DATA_TYPE_FLOAT32: 4, common_pb2.DATA_TYPE_FLOAT64: 8}
_WIRE_DTYPE: dict[int, np.dtype[Any]] = {common_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
                                         common_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8")}
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
# Up to this many values, observations are checked in plain Python (see ServedPacket._finite).
_SMALL = 64
# Wire bytes are little-endian: only a little-endian CPU may copy them into a float32 buffer as they are.
_NATIVE_WIRE = sys.byteorder == "little"


def new_session(model: bytes | str, intra_threads: int, inter_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = inter_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # adaptable graphs keep LoRA weights as overridable initializers on purpose
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise packet.PacketError(f"the packet's graph (model.onnx, or model.ort in ORT format) cannot be loaded by "
                                 f"onnxruntime {ort.__version__}: {exc}") from exc


class _Bound:
    """One observation through an IOBinding whose input [1, obs_dim] and action output are buffers of its own, bound
    once: a run builds no feed dict and allocates no output. Onnxruntime computes what run() computes for a batch of
    one. Not safe to share between threads (an IOBinding is not)."""

    def __init__(self, session: ort.InferenceSession, obs_dim: int, action_shape: tuple[int, ...],
                 action_dtype: np.dtype[Any]) -> None:
        self._obs = np.zeros((1, obs_dim), np.float32)
        self._obs_bytes = self._obs.data.cast("B")
        self._action = np.zeros(action_shape, action_dtype)
        binding = session.io_binding()
        # OrtValues on CPU wrap the numpy buffers without copying: filling self._obs is binding the input.
        binding.bind_ortvalue_input(packet.INPUT_NAME, ort.OrtValue.ortvalue_from_numpy(self._obs))
        binding.bind_ortvalue_output(packet.ACTION_OUTPUT, ort.OrtValue.ortvalue_from_numpy(self._action))
        # The binding's object and the session's, past InferenceSession.run_with_iobinding's Python-side checks
        # for WebGPU graph capture (this session is CPU-only); the public method where they are missing.
        inner, raw = getattr(session, "_sess", None), getattr(binding, "_iobinding", None)
        self._run, self._binding = ((inner.run_with_iobinding, raw) if inner is not None and raw is not None
                                    else (session.run_with_iobinding, binding))
        self._keep = binding  # owns the OrtValues that wrap the buffers

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Actions for a [1, obs_dim] float32 array."""
        self._obs[...] = batch
        self._run(self._binding, None)
        return self._action.copy()  # the caller may keep it (the experience log does); the buffer is reused

    def from_wire(self, data: bytes) -> np.ndarray:
        """Actions for one observation given as obs_dim little-endian float32 values (this CPU's order)."""
        self._obs_bytes[:] = data
        self._run(self._binding, None)
        return self._action.copy()


class ServedPacket:
    """A verified packet ready to answer observations. Immutable once built; shared by every request that
    picked it up, so a swap never disturbs a request in flight."""

    def __init__(self, verified: packet.Packet, session: ort.InferenceSession, adapter_path: Path | None = None,
                 base: ServedPacket | None = None, fallback: bool = False) -> None:
        self.manifest = verified.manifest
        self.sha256 = verified.sha256
        self.size_bytes = verified.size_bytes
        self.key_id = verified.key_id
        self.loaded_at = datetime.datetime.now(datetime.UTC)
        self.base = base
        self.packet_id = self.manifest.packet_id
        self.version = self.manifest.version
        self.obs_shape = tuple(self.manifest.observation_space.shape)
        self.obs_dim = self.manifest.obs_dim
        self.discrete = self.manifest.action_space.kind == "discrete"
        self.session = session
        # The precision of the graph this object runs: the packet's own, or its fp32 fallback's.
        self.precision = "fp32" if fallback else str(self.manifest.quantization.get("precision", "int8-dynamic"))
        self.serving_fallback = fallback
        # Set by the runtime once the packet's self-test ran on this CPU (None: the packet carries none).
        self.self_test: self_test.Report | None = None
        # InferenceSession.run checks the feed's names on every call, then calls its binding; every feed here is
        # built by this class after its own checks, so it calls the binding directly (the public method where a
        # future onnxruntime has no such attribute).
        self._run = getattr(getattr(session, "_sess", None), "run", None) or session.run
        self._outputs = [packet.ACTION_OUTPUT]
        self._run_options: ort.RunOptions | None = None
        # One observation per request is the common case: each thread runs it through its own _Bound. None (the
        # graph cannot be bound): run() serves every batch the ordinary way.
        self._single: tuple[tuple[int, ...], np.dtype[Any]] | None = None
        self._threads = threading.local()
        # answer()'s short way for one float32 observation, where _single is set: the shape as the wire sends it,
        # its size, its values.
        self._from_wire = False
        self._wire_shape = list(self.obs_shape)
        self._wire_bytes = 4 * self.obs_dim
        self._unpack = struct.Struct(f"<{self.obs_dim}f").unpack
        self._check_graph()
        if adapter_path is not None:
            self._activate_adapter(adapter_path)
        self._warm_up()

    def _check_graph(self) -> None:
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = {o.name for o in self.session.get_outputs()}
        if inputs != [packet.INPUT_NAME] or not {packet.ACTION_OUTPUT, packet.RAW_OUTPUT} <= outputs:
            raise packet.PacketError(f"model.onnx has inputs {inputs} and outputs {sorted(outputs)}; expected "
                                     f"[{packet.INPUT_NAME!r}] and {packet.ACTION_OUTPUT!r}, {packet.RAW_OUTPUT!r}")

    def slots(self) -> dict[str, tuple[int, ...]]:
        """The graph's overridable LoRA inputs and their shapes."""
        return {i.name: tuple(i.shape) for i in self.session.get_overridable_initializers()
                if i.name.startswith("lora_")}

    def _activate_adapter(self, path: Path) -> None:
        # The adapter's tensors must be exactly the ones its manifest lists, and fit the base's LoRA inputs.
        try:
            found = {name: tuple(value.shape()) for name, value in
                     ort.AdapterFormat.read_adapter(str(path)).get_parameters().items()}
            adapter = ort.LoraAdapter()
            adapter.Load(str(path))
        except Exception as exc:  # onnxruntime's own exception types
            raise packet.PacketError(f"{packet.ADAPTER_FILE} cannot be read by onnxruntime: {exc}") from exc
        listed = {t.name: t.shape for t in self.manifest.adapter_parameters}
        if found != listed:
            raise packet.PacketError(f"{packet.ADAPTER_FILE} holds {found}, its manifest lists {listed}")
        # RunOptions does not own the adapter: it must live (and its file stay mapped) as long as this packet.
        self._adapter = adapter
        self._run_options = ort.RunOptions()
        self._run_options.add_active_adapter(adapter)

    def _warm_up(self) -> None:
        # The first run allocates buffers; doing it here keeps that cost off the first request and proves the
        # graph runs and answers in the promised shape before it replaces a working packet.
        zeros = np.zeros((2, self.obs_dim), np.float32)
        try:
            action = self.run(zeros)
        except Exception as exc:
            raise packet.PacketError(f"the packet's graph fails on a zero observation batch: {exc}") from exc
        expected = (2,) if self.discrete else (2, self.manifest.action_space.flat_dim)
        if action.shape != expected:
            raise packet.PacketError(f"the packet's graph answers a batch of 2 with action shape "
                                     f"{list(action.shape)}, expected {list(expected)}")
        if self._run_options is not None:
            return  # an adapter's weights reach the graph with run()'s feeds only, not an IOBinding's (ort 1.32)
        self._single = ((1, *expected[1:]), action.dtype)
        try:
            bound = self._bound()(zeros[:1])
            unbound = self._run(self._outputs, {packet.INPUT_NAME: zeros[:1]}, None)[0]
            bindable = bound.dtype == unbound.dtype and np.array_equal(bound, unbound)
        except Exception:  # an onnxruntime without IOBinding, or a graph it cannot bind
            bindable = False
        if not bindable:
            self._single = None  # run() serves every batch the ordinary way
        self._from_wire = bindable and _NATIVE_WIRE and self.obs_dim <= _SMALL

    def answer(self, tensor: common_pb2.Tensor, max_batch: int) -> tuple[np.ndarray, bool]:
        """decode() then run(): (actions, whether the observation had no batch axis). One float32 observation with
        finite values, the common case, takes a shorter way with the same checks: its bytes go straight into this
        thread's bound input; anything else (and every refusal) goes through decode()."""
        data = tensor.data
        if (self._from_wire and tensor.dtype == common_pb2.DATA_TYPE_FLOAT32 and len(data) == self._wire_bytes
                and tensor.shape == self._wire_shape and math.isfinite(sum(self._unpack(data)))):  # see _finite
            return self._bound().from_wire(data), True
        batch, single = self.decode(tensor, max_batch)
        return self.run(batch), single

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Actions for a [batch, obs_dim] float32 array: [batch] int64 or [batch, act_dim] float32."""
        if len(batch) == 1 and self._single is not None:
            return self._bound()(batch)
        return self._run(self._outputs, {packet.INPUT_NAME: batch}, self._run_options)[0]

    def _bound(self) -> _Bound:
        """This thread's binding (an IOBinding is not safe to share between threads), made on its first use."""
        bound: _Bound | None = getattr(self._threads, "bound", None)
        if bound is None:
            assert self._single is not None
            bound = self._threads.bound = _Bound(self.session, self.obs_dim, *self._single)
        return bound

    def run_with_output(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions, raw outputs) for a [batch, obs_dim] float32 array."""
        action, output = self._run([packet.ACTION_OUTPUT, packet.RAW_OUTPUT], {packet.INPUT_NAME: batch},
                                   self._run_options)
        return action, output

    def check_self_test(self) -> self_test.Report | None:
        """Runs the packet's self-test on this CPU and keeps the report; None when the packet carries none."""
        test = self.manifest.self_test
        if test is None:
            return None
        self.self_test = self_test.run(test, self.run_with_output, self.discrete, self.manifest.action_space)
        return self.self_test

    # Validation. Everything below raises InvalidArgument saying what was expected and what arrived.

    def _expected(self, max_batch: int) -> str:
        dims = ", ".join(map(str, self.obs_shape))
        return f"expected [{dims}] or [batch, {dims}] with batch in 1..{max_batch}"

    def _rows(self, shape: tuple[int, ...], max_batch: int) -> tuple[int, bool]:
        """(number of observations, whether the caller sent one observation without a batch axis)."""
        if shape == self.obs_shape:
            return 1, True
        if len(shape) == len(self.obs_shape) + 1 and shape[1:] == self.obs_shape and 1 <= shape[0] <= max_batch:
            return shape[0], False
        raise InvalidArgument(f"observation shape {list(shape)} does not fit packet {self.packet_id}: "
                              f"{self._expected(max_batch)}")

    def decode(self, tensor: common_pb2.Tensor, max_batch: int) -> tuple[np.ndarray, bool]:
        """A wire observation as [batch, obs_dim] float32, checked in this order before any decoding:
        dtype, shape (rank, dims, batch limits), byte size; then values (NaN, inf)."""
        itemsize = _ITEMSIZE.get(tensor.dtype)
        if itemsize is None:
            if tensor.dtype == common_pb2.DATA_TYPE_UNSPECIFIED:
                raise InvalidArgument("observation dtype must be set: expected DATA_TYPE_FLOAT32 or "
                                      "DATA_TYPE_FLOAT64, got DATA_TYPE_UNSPECIFIED")
            name = (common_pb2.DataType.Name(tensor.dtype).removeprefix("DATA_TYPE_").lower()
                    if tensor.dtype in common_pb2.DataType.values() else f"unknown code {tensor.dtype}")
            raise InvalidArgument(f"observation dtype must be float32 or float64, got {name}")
        rows, single = self._rows(tuple(tensor.shape), max_batch)
        expected = rows * self.obs_dim * itemsize
        if len(tensor.data) != expected:
            raise InvalidArgument(f"observation shape {list(tensor.shape)} of "
                                  f"{'float32' if itemsize == 4 else 'float64'} needs {expected} bytes, "
                                  f"got {len(tensor.data)}")
        batch = np.frombuffer(tensor.data, _WIRE_DTYPE[tensor.dtype]).reshape(rows, self.obs_dim)
        return self._finite(batch, single), single

    def _finite(self, batch: np.ndarray, single: bool) -> np.ndarray:
        if batch.size <= _SMALL and batch.dtype == _FLOAT32 and math.isfinite(sum(batch.ravel().tolist())):
            # The common case, a few float32 values: one pass in plain Python. Their sum in double precision
            # cannot overflow, so it is finite exactly when every value is; NaN and inf carry through. Cheaper
            # than numpy here, and it keeps numpy's code out of the CPU's caches right before onnxruntime runs.
            return batch
        if batch.dtype == _FLOAT64:
            with np.errstate(over="ignore"):  # beyond float32 range becomes inf, reported below
                batch = batch.astype(np.float32)
        finite = np.isfinite(batch)
        if finite.all():
            return batch
        where = np.argwhere(~finite.reshape((-1, *self.obs_shape)))[0].tolist()
        raise InvalidArgument(f"observation has a non-finite value (NaN, inf, or beyond float32 range) "
                              f"at index {where[1:] if single else where}")
