"""The hash encoding's fused C++ CPU kernels (``hash_grid_cpu.cpp``), compiled on first use.

``torch.utils.cpp_extension.load`` builds them once per machine, source, torch and Python version
(about 30 s on two cores; needs a C++ compiler and ninja) into :func:`cache_dir`; later runs load
the built module in well under a second. :func:`load_kernels` returns ``None`` with the reason when they
cannot be built, and the encoding falls back to the PyTorch reference.

The autograd functions here have the same inputs and outputs as the reference's
``_HashGridFunction``: first-order gradients of the table and the input, and the double
backward of the input gradient (analytic normals) through :class:`_InputGradFunction`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

_SOURCE = Path(__file__).with_name("hash_grid_cpu.cpp")
_MODULE = "lift3d_hash_grid_cpu"
# -fopenmp: at::parallel_for in the header runs on one thread without it
_CFLAGS = ["-O3", "-fopenmp"]
_LDFLAGS = ["-fopenmp"]
CPP_FEATURE_COUNTS = (1, 2, 4, 8)
"""Features per level the kernels are compiled for."""
_lock = threading.Lock()
_state: dict = {}


def load_kernels():
    """The compiled module, or ``None`` (the reason is in :func:`unavailable_reason`)."""
    with _lock:
        if "module" not in _state:
            _state["module"], _state["reason"] = _build()
        return _state["module"]


def unavailable_reason() -> str | None:
    load_kernels()
    return _state.get("reason")


def cache_dir() -> Path:
    """Where built kernels are kept: ``$TORCH_EXTENSIONS_DIR/lift3d`` (default ``~/.cache/torch_extensions/lift3d``)."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return Path(root) / "lift3d"


def _build_key() -> str:
    """Source, flags, torch and Python versions: a change of any of them builds anew."""
    h = hashlib.sha256(_SOURCE.read_bytes())
    h.update(f"{_CFLAGS}|{_LDFLAGS}|{torch.__version__}|{sys.version_info[:2]}|{platform.machine()}".encode())
    return h.hexdigest()[:16]


def _build():
    if os.environ.get("LIFT3D_NO_CPP") == "1":
        return None, "LIFT3D_NO_CPP=1 is set"
    built = cache_dir() / f"{_MODULE}_{_build_key()}.so"
    try:
        if built.exists():
            spec = importlib.util.spec_from_file_location(_MODULE, built)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module, None
    except ImportError:
        pass  # a damaged or foreign build: build again
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return None, f"no C++ compiler ('{compiler}') on PATH"
    if shutil.which("ninja") is None:
        return None, "ninja is not on PATH (pip install ninja)"
    from torch.utils import cpp_extension

    print("lift3d: compiling the hash grid's C++ kernels (once per machine, about 30 s)...", file=sys.stderr, flush=True)
    built.parent.mkdir(parents=True, exist_ok=True)
    # each process builds in a directory of its own and renames the result into place: a build
    # interrupted half-way leaves no lock behind for the next run to wait on
    work = Path(tempfile.mkdtemp(prefix="build-", dir=built.parent))
    try:
        module = cpp_extension.load(name=_MODULE, sources=[str(_SOURCE)], build_directory=str(work),
                                    extra_cflags=_CFLAGS, extra_ldflags=_LDFLAGS, verbose=False)
        os.replace(work / f"{_MODULE}.so", built)
    except Exception as exc:  # a compiler error must not stop a run: the reference still works
        text = str(exc).strip()
        return None, f"building the C++ kernels failed ({text.splitlines()[0] if text else type(exc).__name__})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return module, None


def levels_tensor(layout: list, offsets: list[int]) -> Tensor:
    """(L, 4) int64 rows of resolution, table size, dense flag and table offset."""
    return torch.tensor([[res, size, int(dense), off] for (res, size, dense), off in zip(layout, offsets)], dtype=torch.int64)


class CppHashGridFunction(torch.autograd.Function):
    """Encoding of (N, 3) points with the fused kernels; differentiable twice in the input.

    ``normals_only``: the input is a leaf made only to take analytic normals, so its gradient is
    computed inside :func:`~lift3d.encodings.hash_grid.input_gradient_only` (the normals) and
    nowhere else: the training loss's backward would otherwise compute a first- and a
    second-order input gradient for a leaf nobody reads (a third of an analytic-normal step).
    """

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, levels: Tensor, normals_only: bool = False) -> Tensor:
        ctx.save_for_backward(x, table, levels)
        ctx.normals_only = normals_only
        return load_kernels().forward(x, table, levels)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        from lift3d.encodings.hash_grid import input_gradient_wanted_only

        x, table, levels = ctx.saved_tensors
        kernels = load_kernels()
        grad_x = grad_table = None
        normals_pass = input_gradient_wanted_only()
        if ctx.needs_input_grad[0] and (normals_pass or not ctx.normals_only):
            if torch.is_grad_enabled():  # create_graph: the input gradient is itself differentiated
                grad_x = _InputGradFunction.apply(x, table, grad_out, levels, ctx.normals_only)
            else:
                grad_x = kernels.input_grad(x, table, grad_out, levels)
        if ctx.needs_input_grad[1] and not normals_pass:
            if torch.is_grad_enabled():
                grad_table = _TableGradFunction.apply(x, grad_out, table.shape[0], levels)
            else:
                grad_table = kernels.backward_table(x, grad_out, table.shape[0], levels)
        return grad_x, grad_table, None, None


class _InputGradFunction(torch.autograd.Function):
    """d(encoding)/dx contracted with ``grad_out``: (N, 3); its backward reaches x (unless
    ``normals_only``), the table and grad_out."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, grad_out: Tensor, levels: Tensor, normals_only: bool) -> Tensor:
        ctx.save_for_backward(x, table, grad_out, levels)
        ctx.normals_only = normals_only
        return load_kernels().input_grad(x, table, grad_out, levels)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gg: Tensor):
        x, table, grad_out, levels = ctx.saved_tensors
        need = ctx.needs_input_grad
        gx, gtable, ggo = load_kernels().input_grad_backward(x, table, grad_out, gg, levels, need[0] and not ctx.normals_only,
                                                             need[1], need[2])
        return gx, gtable, ggo, None, None


class _TableGradFunction(torch.autograd.Function):
    """The table gradient as a function of x and ``grad_out``, for double backward."""

    @staticmethod
    def forward(ctx, x: Tensor, grad_out: Tensor, rows: int, levels: Tensor) -> Tensor:
        ctx.save_for_backward(x, grad_out, levels)
        return load_kernels().backward_table(x, grad_out, rows, levels)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_table: Tensor):
        x, grad_out, levels = ctx.saved_tensors
        kernels = load_kernels()
        # <g_table, grad_table> = sum_c w_c(x) g_table[row_c] . grad_out: linear in grad_out with the
        # forward's gather as its adjoint, and in x it is the input gradient of an encoding by g_table
        gx = kernels.input_grad(x, g_table, grad_out, levels) if ctx.needs_input_grad[0] else None
        ggo = kernels.forward(x, g_table, levels) if ctx.needs_input_grad[1] else None
        return gx, ggo, None, None
