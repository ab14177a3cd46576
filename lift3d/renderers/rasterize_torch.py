"""Pure-PyTorch triangle rasterization: the reference backend of :mod:`lift3d.renderers.rasterizer`.

Conventions (the volume renderer's): clip-space positions from ``CameraBatch.mvp``; image row 0
is the top (NDC y = +1); pixel ``(row, col)`` has its centre at NDC
``x = 2 (col + 0.5) / W - 1``, ``y = 1 - 2 (row + 0.5) / H``. Triangles are two-sided; a
triangle with a vertex behind the camera (w <= 0) is dropped (no near-plane clipping).

The coverage pass is not differentiable (like any z-buffer); barycentrics are recomputed from
the winning triangle's vertices with differentiable operations, so attribute interpolation has
gradients with respect to vertex attributes and vertex positions.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

MAX_CANDIDATES = 1 << 22
"""Pixel-triangle candidate pairs processed at once (bounds memory)."""
_DEPTH_BITS = 31


def to_screen(clip: Float[Tensor, "B V 4"], height: int, width: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pixel-space x (column), y (row), NDC depth and w of every vertex."""
    w = clip[..., 3]
    x = (clip[..., 0] / w + 1) * (0.5 * width) - 0.5
    y = (1 - clip[..., 1] / w) * (0.5 * height) - 0.5
    z = clip[..., 2] / w
    return x, y, z, w


def _edge(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Twice the signed area of (a, b, p)."""
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax)


@torch.no_grad()
def rasterize_triangle_ids(
    clip: Float[Tensor, "B V 4"], faces: Int[Tensor, "F 3"], height: int, width: int
) -> Int[Tensor, "B H W"]:
    """Id of the nearest triangle covering each pixel centre, -1 where none does.

    Each triangle enumerates the pixels of its screen bounding box; the nearest candidate per
    pixel wins through one ``scatter_reduce(amin)`` on a key packing quantised depth above the
    triangle id (ties go to the lower id).
    """
    bsz = clip.shape[0]
    x, y, z, w = to_screen(clip.double(), height, width)
    f = faces.long()
    fx, fy, fz, fw = x[:, f], y[:, f], z[:, f], w[:, f]  # (B, F, 3)
    valid = (fw > 0).all(-1) & torch.isfinite(fx).all(-1) & torch.isfinite(fy).all(-1)
    x0 = fx.amin(-1).ceil().clamp(0, width - 1)
    x1 = fx.amax(-1).floor().clamp(-1, width - 1)
    y0 = fy.amin(-1).ceil().clamp(0, height - 1)
    y1 = fy.amax(-1).floor().clamp(-1, height - 1)
    nx = (x1 - x0 + 1).clamp(min=0)
    ny = (y1 - y0 + 1).clamp(min=0)
    count = torch.where(valid, nx * ny, torch.zeros_like(nx)).long().flatten()  # (B*F,)
    key = torch.full((bsz * height * width,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=clip.device)
    nf = f.shape[0]
    tri_ids = torch.nonzero(count).flatten()
    if len(tri_ids) == 0:
        return torch.full((bsz, height, width), -1, dtype=torch.long, device=clip.device)
    # chunk triangles so that each chunk enumerates at most MAX_CANDIDATES pixels
    cum = torch.cumsum(count[tri_ids], 0)
    start = 0
    while start < len(tri_ids):
        base = cum[start - 1] if start > 0 else torch.zeros((), dtype=torch.long)
        stop = int(torch.searchsorted(cum, base + MAX_CANDIDATES, right=True))
        stop = max(stop, start + 1)
        _scatter_chunk(tri_ids[start:stop], count, nf, fx, fy, fz, x0, y0, nx, height, width, key)
        start = stop
    tri = torch.where(key == torch.iinfo(torch.int64).max, torch.full_like(key, -1), key & ((1 << 32) - 1))
    return tri.view(bsz, height, width)


def _scatter_chunk(ids, count, nf, fx, fy, fz, x0, y0, nx, height, width, key) -> None:
    b_idx, f_idx = ids // nf, ids % nf
    n = count[ids]
    owner = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), n)
    offset = torch.arange(len(owner), device=ids.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    bo, fo = b_idx[owner], f_idx[owner]
    row_w = nx[bo, fo].long()
    px = x0[bo, fo] + (offset % row_w)
    py = y0[bo, fo] + (offset // row_w)
    ax, bx, cx = fx[bo, fo].unbind(-1)
    ay, by, cy = fy[bo, fo].unbind(-1)
    area = _edge(ax, ay, bx, by, cx, cy)
    w0 = _edge(bx, by, cx, cy, px, py) / area
    w1 = _edge(cx, cy, ax, ay, px, py) / area
    w2 = 1 - w0 - w1
    eps = -1e-9
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & (area.abs() > 1e-12)
    za, zb, zc = fz[bo, fo].unbind(-1)
    depth = w0 * za + w1 * zb + w2 * zc
    inside &= (depth >= -1) & (depth <= 1)
    if not inside.any():
        return
    q = ((depth[inside] + 1) * 0.5 * ((1 << _DEPTH_BITS) - 1)).round().long()
    packed = (q << 32) | fo[inside]
    pix = (bo[inside] * height + py[inside].long()) * width + px[inside].long()
    key.scatter_reduce_(0, pix, packed, reduce="amin", include_self=True)


def barycentrics(
    clip: Float[Tensor, "B V 4"], faces: Int[Tensor, "F 3"], tri_id: Int[Tensor, "B H W"], perspective: bool = True
) -> Float[Tensor, "B H W 3"]:
    """Barycentric weights of each pixel centre in its triangle (zeros where ``tri_id`` is -1).

    Differentiable with respect to ``clip``; perspective-correct unless ``perspective=False``
    (then they are screen-space weights, which interpolate NDC depth exactly).
    """
    bsz, h, w_img = tri_id.shape
    x, y, _, w = to_screen(clip, h, w_img)
    covered = tri_id >= 0
    tid = tri_id.clamp(min=0)
    f = faces.long()[tid]  # (B, H, W, 3)
    bidx = torch.arange(bsz, device=clip.device).view(-1, 1, 1, 1)
    vx, vy, vw = x[bidx, f], y[bidx, f], w[bidx, f]  # (B, H, W, 3)
    rows, cols = torch.meshgrid(torch.arange(h, device=clip.device, dtype=clip.dtype),
                                torch.arange(w_img, device=clip.device, dtype=clip.dtype), indexing="ij")
    ax, bx, cx = vx.unbind(-1)
    ay, by, cy = vy.unbind(-1)
    area = _edge(ax, ay, bx, by, cx, cy)
    area = torch.where(covered, area, torch.ones_like(area))
    l0 = _edge(bx, by, cx, cy, cols, rows) / area
    l1 = _edge(cx, cy, ax, ay, cols, rows) / area
    lam = torch.stack([l0, l1, 1 - l0 - l1], -1)
    if perspective:
        lam = lam / torch.where(covered[..., None], vw, torch.ones_like(vw))
        lam = lam / lam.sum(-1, keepdim=True)
    return torch.where(covered[..., None], lam, torch.zeros_like(lam))
