"""A frozen diffusers UNet run as TorchScript-frozen traces on a CPU: 15–30 % faster calls.

``torch.jit.trace`` + ``torch.jit.freeze`` fold the weights into the graph and drop the Python
module overhead of diffusers' blocks. ``optimize_for_inference`` is not applied: it moves the
convolutions to oneDNN's blocked layout, whose reorders cost more than they save at the bundled
priors' sizes (2026-11-29, median of 60 calls of the text prior, batch 2: freeze alone 22–24 ms,
with ``optimize_for_inference`` 26–28 ms, eager 34–41 ms; batch 8: 53–71 against 78–94 ms).
A trace takes about 0.6 s to make.

With ``k`` torch threads and a batch that ``k`` divides, a trace splits the batch into ``k``
chunks run side by side (``torch.jit.fork``), each on one thread: the bundled priors' calls are
too small for two threads to share one convolution well. Measured 2026-11-29, text prior, two
threads: batch 2 19.2 → 15.7 ms, batch 8 (the main job's call) 54–60 → 47–48 ms.

A trace fixes the shapes it saw (diffusers branches on batch size and tensor sizes), so one is
made per input signature and calls with other shapes get their own. Only small frozen UNets are
traced (each trace holds its own copy of the weights); a UNet with trainable parameters or LoRA
adapters (ProlificDreamer's), a CUDA run, or ``LIFT3D_NO_TRACE=1`` runs eagerly, and so does
every call after a trace fails (a warning says why).

A trace may compute in bfloat16 (``compute_dtype``): it then holds a bfloat16 copy of the
weights, casts its float32 inputs on entry and its output back on exit, so callers see float32.
Where the CPU does bfloat16 natively (AMX or AVX512-BF16), the main job's batch-8 call measured
41–42 → 31–32 ms (Intel, AMX, 2026-11-29) and 59 → 48 ms (AMD EPYC, AVX512-BF16, 2026-12-06);
at batch 2 it gains nothing (the call is bound by per-op overhead). Relative error of the
prediction: about 4e-3. Guidance asks for it with ``cpu_trace_dtype`` (``auto``: bfloat16 only
on such CPUs, see :func:`resolve_trace_dtype`); eager calls always run in the UNet's own dtype.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from typing import Literal

import torch
from torch import Tensor

MAX_TRACED_PARAMETERS = 50_000_000
"""UNets larger than this run eagerly (a trace per shape would copy their weights)."""
MAX_TRACES = 4
"""Traces kept per UNet; the oldest is dropped for a new signature."""


TraceDtype = Literal["auto", "float32", "bfloat16"]


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16 in ``/proc/cpuinfo``).
    Elsewhere (other CPUs, other systems) oneDNN would emulate it, slower than float32."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_trace_dtype(choice: TraceDtype) -> torch.dtype:
    """The dtype a traced call computes in: ``auto`` is bfloat16 where :func:`cpu_has_native_bf16`."""
    if choice == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[choice]


class _Call(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.compute_dtype = compute_dtype

    def forward(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        if self.compute_dtype is None:
            return self.unet(sample, t, encoder_hidden_states=context, return_dict=False)[0]
        out = self.unet(sample.to(self.compute_dtype), t, encoder_hidden_states=context.to(self.compute_dtype), return_dict=False)[0]
        return out.to(sample.dtype)


class _SplitCall(torch.nn.Module):
    """The batch in ``parts`` chunks, each an inter-op task (the first on the calling thread)."""

    def __init__(self, unet: torch.nn.Module, parts: int, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.call = _Call(unet, compute_dtype)
        self.parts = parts

    def forward(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        chunks = list(zip(sample.chunk(self.parts), t.chunk(self.parts), context.chunk(self.parts)))
        futures = [torch.jit.fork(self.call, *chunk) for chunk in chunks[1:]]
        first = self.call(*chunks[0])
        return torch.cat([first, *(torch.jit.wait(f) for f in futures)])


def split_parts(batch: int) -> int:
    """How many side-by-side chunks a traced call of ``batch`` runs: the torch thread count when
    it divides the batch and the inter-op pool can take the other chunks, else 1 (no split)."""
    threads = torch.get_num_threads()
    if threads < 2 or batch % threads != 0 or threads - 1 > torch.get_num_interop_threads():
        return 1
    return threads


class TracedUNet:
    """Call as ``traced(sample, t, context)``: the UNet's output tensor (``.sample`` of diffusers).

    ``compute_dtype``: what the traces compute in when it differs from the inputs' dtype (a
    bfloat16 copy of the weights, made at the first such trace); the output has the inputs' dtype.
    """

    def __init__(self, unet: torch.nn.Module, compute_dtype: torch.dtype = torch.float32) -> None:
        self.unet = unet
        self.compute_dtype = compute_dtype
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}
        self._cast_unet: torch.nn.Module | None = None
        self.disabled: str | None = None
        if os.environ.get("LIFT3D_NO_TRACE") == "1":
            self.disabled = "LIFT3D_NO_TRACE=1"
        elif sum(p.numel() for p in unet.parameters()) > MAX_TRACED_PARAMETERS:
            self.disabled = "the UNet is too large to keep a traced copy per shape"

    def reset(self) -> None:
        """Drop the traces (the UNet moved to another device or dtype)."""
        self._traces.clear()
        self._cast_unet = None

    def _module(self, sample: Tensor, parts: int) -> torch.nn.Module:
        """What to trace: the UNet, or its copy in ``compute_dtype`` behind casts."""
        unet, cast = self.unet, None
        if sample.dtype != self.compute_dtype:
            if self._cast_unet is None:
                # nn.Module.to, not diffusers' override, which warns about any dtype argument
                self._cast_unet = torch.nn.Module.to(copy.deepcopy(self.unet), self.compute_dtype)
            unet, cast = self._cast_unet, self.compute_dtype
        return (_SplitCall(unet, parts, cast) if parts > 1 else _Call(unet, cast)).eval()

    def _eager(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        return self.unet(sample, t, encoder_hidden_states=context).sample

    def _traceable(self, sample: Tensor) -> bool:
        if self.disabled or sample.device.type != "cpu" or torch.is_grad_enabled():
            return False
        unet = self.unet
        has_adapters = bool(getattr(unet, "peft_config", None)) or bool(getattr(unet, "_hf_peft_config_loaded", False))
        return not has_adapters and not any(p.requires_grad for p in unet.parameters())

    def __call__(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        if not self._traceable(sample):
            return self._eager(sample, t, context)
        parts = split_parts(sample.shape[0])
        key = (tuple(sample.shape), sample.dtype, tuple(t.shape), t.dtype, tuple(context.shape), context.dtype, self.compute_dtype, parts)
        fn = self._traces.get(key)
        if fn is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TracerWarnings: each trace serves only its own shapes
                    traced = torch.jit.trace(self._module(sample, parts), (sample, t, context), check_trace=False)
                    fn = torch.jit.freeze(traced)
            except Exception as exc:  # noqa: BLE001 - any failure falls back to the eager UNet
                self.disabled = f"tracing failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                warnings.warn(f"lift3d: the prior's UNet runs eagerly: {self.disabled}", stacklevel=2)
                return self._eager(sample, t, context)
            if len(self._traces) >= MAX_TRACES:
                self._traces.pop(next(iter(self._traces)))
            self._traces[key] = fn
        if parts == 1:
            return fn(sample, t, context)
        torch.set_num_threads(1)  # each chunk on one thread
        try:
            return fn(sample, t, context)
        finally:
            torch.set_num_threads(parts)


class TracedDenoiser:
    """What a prior holding a diffusers UNet in ``self.unet`` shares: traced calls and CPU placement."""

    unet: torch.nn.Module

    def denoise(self, sample: Tensor, t: Tensor, context: Tensor) -> Tensor:
        """The UNet's raw output (what the scheduler's ``prediction_type`` says), through
        :class:`TracedUNet` (faster frozen calls on a CPU)."""
        traced = self.__dict__.get("_traced")
        if traced is None:
            traced = self.__dict__["_traced"] = TracedUNet(self.unet, self.__dict__.get("_trace_dtype", torch.float32))
        return traced(sample, t, context)

    def set_trace_dtype(self, choice: TraceDtype) -> None:
        """What the traced calls compute in (``auto``: see :func:`resolve_trace_dtype`); float32
        until set. Eager calls (under grad, on CUDA, ``LIFT3D_NO_TRACE=1``) are not affected."""
        dtype = resolve_trace_dtype(choice)
        if self.__dict__.get("_trace_dtype", torch.float32) != dtype:
            self.__dict__["_trace_dtype"] = dtype
            self.__dict__.pop("_traced", None)

    def reset_traces(self) -> None:
        """Drop the UNet's traces (after moving it to another device, dtype or memory format)."""
        traced = self.__dict__.get("_traced")
        if traced is not None:
            traced.reset()

    def place_unet(self, device: torch.device) -> None:
        """Move the UNet to ``device``; on a CPU, channels-last weights (frozen traces measured
        22–24 ms against 25–27 ms contiguous for the bundled text prior's CFG call), then drop
        the traces made for the old placement."""
        self.unet.to(device)
        if torch.device(device).type == "cpu":
            self.unet.to(memory_format=torch.channels_last)
        self.reset_traces()
