"""Multiresolution hash encoding (Instant-NGP), pure PyTorch with a hand-written backward.

This is the reference implementation. On a CPU, runs use the fused C++ kernels of
``hash_grid_cpp.py`` when they build (``implementation: auto``, the default), about 3x faster
and tested against this file; on CUDA, tiny-cuda-nn when installed.

Level ``l`` has resolution ``floor(base_resolution * per_level_scale**l)``; a point in
[0, 1]^3 is interpolated trilinearly from the 8 corners of its cell. Levels whose grid fits
in the table are indexed densely, finer ones through the spatial hash
``(x * 1) ^ (y * 2654435761) ^ (z * 805459861) mod T``. The hash is computed in int32 with
wrap-around multiplication, which keeps the low bits (all that the modulo by a power of two
keeps) identical to the 64-bit formula.

The autograd function stores the corner indices and weights of every level, and its backward
scatters with one ``index_add`` per level (autograd's own backward of an indexing op is
several times slower here). Its backward is built of differentiable operations, so
analytic normals (a gradient with respect to the input) can be trained through.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from jaxtyping import Float
from torch import Tensor

from lift3d.encodings import hash_grid_cpp

PRIMES = (1, 2654435761, 805459861)

_input_grad_only = threading.local()


@contextlib.contextmanager
def input_gradient_only():
    """Inside, the hash grid's backward computes only the gradient w.r.t. its input points.

    For ``torch.autograd.grad(density, points, create_graph=True)`` (analytic normals) autograd
    still asks a custom function for every input's gradient; the table's would be built, with a
    graph, and thrown away. The table still receives the normals' gradient through the graph of
    the input gradient.
    """
    before = getattr(_input_grad_only, "active", False)
    _input_grad_only.active = True
    try:
        yield
    finally:
        _input_grad_only.active = before


def input_gradient_wanted_only() -> bool:
    """True inside :func:`input_gradient_only` (on this thread)."""
    return getattr(_input_grad_only, "active", False)


def _int32(v: int) -> int:
    return v - 2**32 if v >= 2**31 else v


@dataclass
class HashGridConfig:
    """Options of the hash-grid encoding."""

    n_levels: int = 16
    """Number of resolution levels."""
    n_features_per_level: int = 2
    """Features stored per table entry."""
    log2_hashmap_size: int = 19
    """log2 of the number of entries of each hashed level's table."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level."""
    per_level_scale: float = 1.4472692374403782
    """Resolution growth factor between levels (default: 16 -> 4096 at the finest of 16 levels, 16 * 1.4473**15)."""
    init_scale: float = 1e-4
    """Table entries start uniform in [-init_scale, init_scale]."""
    implementation: Literal["auto", "torch", "cpp", "tcnn"] = "auto"
    """``torch``: the pure-PyTorch reference; ``cpp``: fused C++ CPU kernels, compiled on first use
    (about 30 s once per machine; needs a C++ compiler and ninja); ``tcnn``: tiny-cuda-nn (CUDA only);
    ``auto``: tiny-cuda-nn when installed and the run's device is CUDA (not merely present), else the
    C++ kernels when they build (a warning says why not, and the reference is used), else torch."""


def level_layout(cfg: HashGridConfig) -> list[tuple[int, int, bool]]:
    """(resolution, table size, dense?) of every level."""
    table = 2**cfg.log2_hashmap_size
    out = []
    for level in range(cfg.n_levels):
        res = int(math.floor(cfg.base_resolution * cfg.per_level_scale**level))
        res = max(res, 2)
        if res**3 <= table:
            out.append((res, res**3, True))
        else:
            out.append((res, table, False))
    return out


def corner_indices_and_weights(x: Tensor, res: int, size: int, dense: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Corner table indices (8, N) int32, trilinear weights (8, N) and cell fractions (N, 3).

    Corner ``c`` has offset ``(c & 1, (c >> 1) & 1, (c >> 2) & 1)``. Corner-major layout lets
    every corner be written straight into its own contiguous row.
    """
    n = x.shape[0]
    pos = x * (res - 1)
    p0 = pos.floor().clamp(0, res - 2)
    frac = pos - p0
    p0i = p0.to(torch.int32)
    if dense:
        mult = (1, res, res * res)
        per_dim = [(p0i[:, d] * mult[d], p0i[:, d] * mult[d] + mult[d]) for d in range(3)]
        combine = torch.add
    else:
        per_dim = []
        for d in range(3):
            a = p0i[:, d] * _int32(PRIMES[d])
            per_dim.append((a, a + _int32(PRIMES[d])))
        combine = torch.bitwise_xor
    hx, hy, hz = per_dim
    hxy = [combine(hx[c & 1], hy[(c >> 1) & 1]) for c in range(4)]
    idx = torch.empty(8, n, dtype=torch.int32, device=x.device)
    for c in range(8):
        combine(hxy[c & 3], hz[c >> 2], out=idx[c])
    if not dense:
        idx.bitwise_and_(size - 1)
    fx, fy, fz = frac[:, 0], frac[:, 1], frac[:, 2]
    wx, wy, wz = (1 - fx, fx), (1 - fy, fy), (1 - fz, fz)
    wxy = [wx[c & 1] * wy[(c >> 1) & 1] for c in range(4)]
    w = torch.empty(8, n, dtype=x.dtype, device=x.device)
    for c in range(8):
        torch.mul(wxy[c & 3], wz[c >> 2], out=w[c])
    return idx, w, frac


def _gather(table: Tensor, idx: Tensor, differentiable: bool = False) -> Tensor:
    """table[idx] for idx (8, N) -> (8, N, F).

    Without ``differentiable``, two float32 features move as one float64 (about twice as
    fast). That reinterpreting view has no autograd history, so where a graph through the
    gather is needed (the double backward of analytic normals) the plain gather is used.
    """
    n_feat = table.shape[1]
    flat = idx.reshape(-1)
    if differentiable and torch.is_grad_enabled() and table.requires_grad:
        return _DifferentiableGather.apply(table, idx)
    if not differentiable and table.dtype == torch.float32 and n_feat == 2 and table.is_contiguous():
        return torch.index_select(table.view(torch.float64).view(-1), 0, flat).view(torch.float32).view(*idx.shape, 2)
    return torch.index_select(table, 0, flat).view(*idx.shape, n_feat)


def _scatter_columns(flat_idx: Tensor, columns: list[Tensor], out: Tensor) -> Tensor:
    """``out[flat_idx[i], f] = sum of columns[f][i]`` over i, for a (size, F) ``out``, by one
    ``bincount`` per feature (several times faster than ``index_add_`` on a CPU)."""
    for f, col in enumerate(columns):
        out[:, f] = torch.bincount(flat_idx, col, minlength=out.shape[0]).to(out.dtype)
    return out


class _DifferentiableGather(torch.autograd.Function):
    """``table[idx]`` as (8, N, F) whose backward scatters with bincount (autograd's own backward
    of an index_select, an ``index_add_``, dominated the analytic-normal step)."""

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        ctx.size = table.shape[0]
        return torch.index_select(table, 0, idx.reshape(-1)).view(*idx.shape, table.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        (idx,) = ctx.saved_tensors
        out = torch.empty(ctx.size, grad.shape[-1], dtype=grad.dtype, device=grad.device)
        cols = grad.reshape(-1, grad.shape[-1]).t().contiguous()
        return _scatter_columns(idx.reshape(-1), list(cols), out), None


_CORNER_BITS: dict[torch.device, Tensor] = {}


def _corner_bits(device: torch.device) -> Tensor:
    """(8, 1, 3) bool: corner ``c`` takes the upper cell side on axis ``d``."""
    if device not in _CORNER_BITS:
        _CORNER_BITS[device] = torch.tensor([[(c >> d) & 1 for d in range(3)] for c in range(8)], dtype=torch.bool, device=device)[:, None, :]
    return _CORNER_BITS[device]


def _corner_factors(frac: Tensor) -> Tensor:
    """Per corner and axis the 1-D interpolation factor, ``f`` or ``1 - f``: (8, N, 3)."""
    return torch.where(_corner_bits(frac.device), frac[None], 1 - frac[None])


def _trilinear_gradient(dfeat: Tensor, frac: Tensor) -> Tensor:
    """Σ_c dfeat_c · ∂w_c/∂frac for trilinear weights w_c: (N, 3), differentiable in both.

    Corner ``c`` takes the upper side on axis d when bit d of c is set, so ``dfeat`` viewed as
    (2, 2, 2, N) is indexed [z, y, x]. The derivative along one axis is the difference of the
    corner values across that axis, interpolated bilinearly over the other two: three small
    lerps per axis instead of (8, N, 3) products (the largest cost of the analytic-normal step).
    """
    d = dfeat.view(2, 2, 2, -1)
    fx, fy, fz = frac.unbind(-1)
    dx = d[:, :, 1] - d[:, :, 0]  # (z, y, N)
    gx = torch.lerp(dx[:, 0], dx[:, 1], fy)  # (z, N)
    dy = d[:, 1] - d[:, 0]  # (z, x, N)
    gy = torch.lerp(dy[:, 0], dy[:, 1], fx)
    dz = d[1] - d[0]  # (y, x, N)
    gz = torch.lerp(dz[:, 0], dz[:, 1], fx)  # (y, N)
    return torch.stack([torch.lerp(gx[0], gx[1], fz), torch.lerp(gy[0], gy[1], fz), torch.lerp(gz[0], gz[1], fy)], dim=-1)


class _HashGridFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, layout: list, offsets: list[int]) -> Tensor:
        outs, saved = [], []
        for (res, size, dense), off in zip(layout, offsets):
            idx, w, frac = corner_indices_and_weights(x, res, size, dense)
            feats = _gather(table[off : off + size], idx)
            outs.append(torch.einsum("cn,cnf->nf", w, feats))
            saved += [idx, w, frac]
        ctx.layout, ctx.offsets = layout, offsets
        ctx.save_for_backward(x, table, *saved)
        return torch.cat(outs, dim=1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table, *saved = ctx.saved_tensors
        n_feat = table.shape[1]
        create_graph = torch.is_grad_enabled()
        grad_table = grad_x = None
        g_levels = grad_out.split(n_feat, dim=1)
        levels = []
        for level, (res, size, dense) in enumerate(ctx.layout):
            if create_graph:  # double backward: rebuild the weights as functions of x (the corners stay)
                idx = saved[3 * level]
                pos = x * (res - 1)
                frac = pos - pos.detach().floor().clamp(0, res - 2)  # as in forward, differentiable in x
                levels.append((idx, _corner_factors(frac).prod(dim=-1), frac))
            else:
                levels.append(tuple(saved[3 * level : 3 * level + 3]))
        if ctx.needs_input_grad[1] and not input_gradient_wanted_only():
            # every level's slice is written in full below, so no zero fill (a 50 MB fill costs ~0.1 s here)
            grad_table = torch.zeros_like(table) if create_graph else torch.empty_like(table)
            for level, ((res, size, dense), off) in enumerate(zip(ctx.layout, ctx.offsets)):
                idx, w, _ = levels[level]
                g = g_levels[level]
                if create_graph:  # keep the scatter differentiable
                    contrib = w[:, :, None] * g[None, :, :]  # (8, N, F)
                    grad_table = grad_table.index_add(0, idx.reshape(-1).long() + off, contrib.reshape(-1, n_feat))
                else:
                    g_rows = g.t().contiguous()  # (F, N): contiguous rows broadcast fast
                    columns = [(w * g_rows[f][None, :]).view(-1) for f in range(n_feat)]
                    _scatter_columns(idx.view(-1), columns, grad_table[off : off + size])
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            for level, ((res, size, dense), off) in enumerate(zip(ctx.layout, ctx.offsets)):
                idx, _, frac = levels[level]
                feats = _gather(table[off : off + size], idx, differentiable=create_graph)  # (8, N, F)
                dfeat = torch.einsum("cnf,nf->cn", feats, g_levels[level])  # (8, N)
                grad_x = grad_x + _trilinear_gradient(dfeat, frac) * (res - 1)
        return grad_x, grad_table, None, None


class HashGridEncoding(nn.Module):
    """Hash-grid encoding of points in [0, 1]^3 to ``n_levels * n_features_per_level`` features."""

    def __init__(self, cfg: HashGridConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_output_dims = cfg.n_levels * cfg.n_features_per_level
        self.backend = self._choose_backend(cfg.implementation, cfg.n_features_per_level)
        if self.backend == "tcnn":
            self._tcnn = _make_tcnn(cfg)
            return
        self.layout = level_layout(cfg)
        sizes = [size for _, size, _ in self.layout]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        table = torch.empty(sum(sizes), cfg.n_features_per_level).uniform_(-cfg.init_scale, cfg.init_scale)
        self.table = nn.Parameter(table)
        self._levels = hash_grid_cpp.levels_tensor(self.layout, self.offsets) if self.backend == "cpp" else None

    @staticmethod
    def _choose_backend(choice: str, n_features: int = 2) -> str:
        """``torch``, ``cpp`` (CPU runs) or ``tcnn`` (CUDA runs), as :class:`HashGridConfig` describes."""
        from lift3d.errors import ConfigError

        if choice == "torch":
            return "torch"
        if choice == "cpp":
            if n_features not in hash_grid_cpp.CPP_FEATURE_COUNTS:
                raise ConfigError(f"hash grid implementation 'cpp' takes n_features_per_level in {hash_grid_cpp.CPP_FEATURE_COUNTS}, "
                                  f"not {n_features}; choose one of those, or set implementation=torch")
            if hash_grid_cpp.load_kernels() is None:
                raise ConfigError(f"hash grid implementation 'cpp' is unavailable: {hash_grid_cpp.unavailable_reason()}; "
                                  "fix that, or set implementation=torch (or auto)")
            return "cpp"
        from lift3d.runtime import run_on_cuda

        try:
            import tinycudann  # noqa: F401

            installed = True
        except ImportError:
            installed = False
        on_cuda = run_on_cuda()
        available = installed and on_cuda
        if choice == "tcnn" and not available:
            why = "this run is not on CUDA (--gpu cpu, or no GPU)" if installed else "tiny-cuda-nn is not installed"
            raise ConfigError(f"hash grid implementation 'tcnn' needs tiny-cuda-nn and a CUDA run, but {why}; "
                              "install tinycudann and run on a GPU, or set implementation=torch")
        if available:
            return "tcnn"
        if on_cuda or n_features not in hash_grid_cpp.CPP_FEATURE_COUNTS:
            return "torch"
        return "cpp" if _cpp_kernels_or_warn() else "torch"

    def forward(self, x: Float[Tensor, "N 3"], normals_only_input: bool = False) -> Float[Tensor, "N D"]:
        """``normals_only_input``: ``x`` is a leaf made only for analytic normals; its gradient is
        then computed only inside :func:`input_gradient_only` (C++ kernels; the others ignore it)."""
        if self.backend == "tcnn":
            return self._tcnn(x).float()
        x = x.clamp(0.0, 1.0)
        if self.backend == "cpp" and x.device.type == "cpu":
            return hash_grid_cpp.CppHashGridFunction.apply(x, self.table, self._levels, normals_only_input)
        return _HashGridFunction.apply(x, self.table, self.layout, self.offsets)


def _cpp_kernels_or_warn() -> bool:
    """Whether the C++ kernels load; the first time they do not, a warning says why."""
    if hash_grid_cpp.load_kernels() is not None:
        return True
    if not _warned_cpp:
        _warned_cpp.append(True)
        warnings.warn(f"lift3d: the hash grid's C++ kernels are unavailable ({hash_grid_cpp.unavailable_reason()}); "
                      "using the slower PyTorch reference", stacklevel=3)
    return False


_warned_cpp: list[bool] = []


def _make_tcnn(cfg: HashGridConfig):
    import tinycudann as tcnn

    return tcnn.Encoding(
        3,
        {
            "otype": "HashGrid",
            "n_levels": cfg.n_levels,
            "n_features_per_level": cfg.n_features_per_level,
            "log2_hashmap_size": cfg.log2_hashmap_size,
            "base_resolution": cfg.base_resolution,
            "per_level_scale": cfg.per_level_scale,
        },
    )
