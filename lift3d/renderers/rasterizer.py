"""Differentiable mesh rasterization: coverage, attribute interpolation, silhouette anti-aliasing.

The PyTorch backend (:mod:`lift3d.renderers.rasterize_torch`) is the reference and runs
anywhere; ``backend="nvdiffrast"`` replaces only the coverage pass with nvdiffrast's when it is
installed (imported lazily). Interpolation and anti-aliasing are the same code for both.

Typical use::

    rast = MeshRasterizer().rasterize(clip, faces, (H, W))
    colour = rasterizer.interpolate(vertex_colours, rast, faces)
    colour = rasterizer.antialias(colour, rast, clip, faces)   # gradients at silhouette edges
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lift3d.errors import ConfigError
from lift3d.renderers import rasterize_torch as rt


@dataclass
class Rasterized:
    """Per-pixel result of rasterizing a batch of views of one mesh."""

    tri_id: Int[Tensor, "B H W"]
    """Index of the visible triangle, -1 for background."""
    bary: Float[Tensor, "B H W 3"]
    """Perspective-correct barycentric weights (zeros on background); differentiable in positions."""
    depth: Float[Tensor, "B H W"]
    """NDC depth in [-1, 1] (1 on background); differentiable in positions."""

    @property
    def mask(self) -> Bool[Tensor, "B H W"]:
        return self.tri_id >= 0


class MeshRasterizer:
    """Rasterizes clip-space triangles (``CameraBatch.mvp`` conventions)."""

    def __init__(self, backend: str = "torch") -> None:
        """``backend``: "torch" (reference, any device) or "nvdiffrast" (CUDA, optional)."""
        self.backend = backend
        self._nvdiffrast_context = None
        if backend == "nvdiffrast":
            try:
                import nvdiffrast.torch as dr  # noqa: F401
            except ImportError as exc:
                raise ConfigError("rasterizer backend 'nvdiffrast' is not installed; pip install nvdiffrast (CUDA), or use backend: torch") from exc
        elif backend != "torch":
            raise ConfigError(f"unknown rasterizer backend {backend!r}; choose 'torch' or 'nvdiffrast'")

    def rasterize(
        self, clip: Float[Tensor, "B V 4"], faces: Int[Tensor, "F 3"], resolution: tuple[int, int]
    ) -> Rasterized:
        h, w = resolution
        if self.backend == "nvdiffrast":
            tri_id = self._nvdiffrast_ids(clip, faces, h, w)
        else:
            tri_id = rt.rasterize_triangle_ids(clip, faces, h, w)
        bary = rt.barycentrics(clip, faces, tri_id)
        screen = rt.barycentrics(clip, faces, tri_id, perspective=False)
        _, _, z, _ = rt.to_screen(clip, h, w)
        # NDC depth is affine in screen space: interpolate it with the screen-space weights
        depth = interpolate(z[..., None], Rasterized(tri_id, screen, torch.zeros_like(screen[..., 0])), faces)[..., 0]
        depth = torch.where(tri_id >= 0, depth, torch.ones_like(depth))
        return Rasterized(tri_id=tri_id, bary=bary, depth=depth)

    def _nvdiffrast_ids(self, clip: Tensor, faces: Tensor, h: int, w: int) -> Tensor:
        import nvdiffrast.torch as dr

        if self._nvdiffrast_context is None:
            self._nvdiffrast_context = dr.RasterizeCudaContext(device=clip.device)
        rast, _ = dr.rasterize(self._nvdiffrast_context, clip.contiguous().float(), faces.int().contiguous(), (h, w))
        # nvdiffrast's row 0 is the bottom of the image (OpenGL); lift3d's is the top
        return rast[..., 3].flip(1).long() - 1

    def interpolate(self, attr: Tensor, rast: Rasterized, faces: Tensor) -> Tensor:
        """See :func:`interpolate`."""
        return interpolate(attr, rast, faces)

    def antialias(self, colour: Tensor, rast: Rasterized, clip: Tensor, faces: Tensor) -> Tensor:
        """See :func:`antialias`."""
        return antialias(colour, rast, clip, faces)


def interpolate(
    attr: Float[Tensor, "*B V C"], rast: Rasterized, faces: Int[Tensor, "F 3"]
) -> Float[Tensor, "B H W C"]:
    """Per-pixel attribute ``sum_k bary_k * attr[face_k]`` (zeros on background).

    ``attr`` is (V, C) shared by every view or (B, V, C) per view. Differentiable with respect
    to ``attr`` and, through the barycentrics, to the vertex positions.
    """
    bsz = rast.tri_id.shape[0]
    if attr.dim() == 2:
        attr = attr.expand(bsz, *attr.shape)
    f = faces.long()[rast.tri_id.clamp(min=0)]  # (B, H, W, 3)
    bidx = torch.arange(bsz, device=attr.device).view(-1, 1, 1, 1)
    corner = attr[bidx, f]  # (B, H, W, 3, C)
    return (rast.bary[..., None] * corner).sum(-2)


def antialias(
    colour: Float[Tensor, "B H W C"], rast: Rasterized, clip: Float[Tensor, "B V 4"], faces: Int[Tensor, "F 3"]
) -> Float[Tensor, "B H W C"]:
    """Blend across silhouette edges by how far each edge lies between neighbouring pixel centres.

    For each pair of horizontal or vertical neighbours that show different surfaces, the front
    triangle's edge crossing the segment between their centres (not an edge shared with the
    other pixel's triangle) is located at fraction ``t`` from the front pixel. If it lies past the
    midpoint, the other pixel takes ``t - 0.5`` of the front colour; otherwise the front pixel
    takes ``0.5 - t`` of the other colour, each scaled by the pass's share of the edge normal
    (``n_x^2`` for horizontal pairs, ``n_y^2`` for vertical ones), so that a pixel reached by a
    slanted edge from both directions is blended once in total. ``t`` depends on the vertex
    positions, so the image has gradients with respect to them where a silhouette is.
    """
    bsz, h, w = rast.tri_id.shape
    x, y, _, _ = rt.to_screen(clip, h, w)
    flat_colour = colour.reshape(bsz * h * w, -1)
    delta = torch.zeros_like(flat_colour)
    tri = rast.tri_id.reshape(-1)
    depth = rast.depth.reshape(-1)
    idx = torch.arange(bsz * h * w, device=colour.device).view(bsz, h, w)
    f_all = faces.long()
    for horizontal, (p_idx, q_idx) in ((True, (idx[:, :, :-1], idx[:, :, 1:])), (False, (idx[:, :-1, :], idx[:, 1:, :]))):
        p_idx, q_idx = p_idx.reshape(-1), q_idx.reshape(-1)
        tp, tq = tri[p_idx], tri[q_idx]
        pick = (tp != tq) & ((tp >= 0) | (tq >= 0))
        p_idx, q_idx, tp, tq = p_idx[pick], q_idx[pick], tp[pick], tq[pick]
        if len(p_idx) == 0:
            continue
        p_front = (tp >= 0) & ((tq < 0) | (depth[p_idx] <= depth[q_idx]))
        front = torch.where(p_front, p_idx, q_idx)
        other = torch.where(p_front, q_idx, p_idx)
        t_front = torch.where(p_front, tp, tq)
        t_other = torch.where(p_front, tq, tp)
        b = front // (h * w)
        verts = f_all[t_front]  # (N, 3)
        vx, vy = x[b[:, None], verts], y[b[:, None], verts]
        pix_xy = lambda i: ((i % w).to(x.dtype), ((i // w) % h).to(x.dtype))  # noqa: E731
        fx_, fy_ = pix_xy(front)
        ox_, oy_ = pix_xy(other)
        # edge k is opposite vertex k: l_k = edge(v_{k+1}, v_{k+2}, p) / area, >= 0 inside
        area = rt._edge(vx[:, 0], vy[:, 0], vx[:, 1], vy[:, 1], vx[:, 2], vy[:, 2])
        lam_front, lam_other = [], []
        for k in range(3):
            i, j = (k + 1) % 3, (k + 2) % 3
            lam_front.append(rt._edge(vx[:, i], vy[:, i], vx[:, j], vy[:, j], fx_, fy_) / area)
            lam_other.append(rt._edge(vx[:, i], vy[:, i], vx[:, j], vy[:, j], ox_, oy_) / area)
        lf, lo = torch.stack(lam_front, -1), torch.stack(lam_other, -1)
        exits = (lf >= 0) & (lo < 0)
        t = lf / (lf - lo).clamp(min=1e-12)
        t = torch.where(exits, t, torch.full_like(t, float("inf")))
        t_min, k = t.min(-1)
        has_edge = torch.isfinite(t_min)
        # an edge shared with the other pixel's triangle is interior, not a silhouette
        e0 = verts.gather(1, ((k + 1) % 3)[:, None])[:, 0]
        e1 = verts.gather(1, ((k + 2) % 3)[:, None])[:, 0]
        other_verts = f_all[t_other.clamp(min=0)]
        shared = (t_other >= 0) & (other_verts == e0[:, None]).any(-1) & (other_verts == e1[:, None]).any(-1)
        keep = has_edge & ~shared
        if not keep.any():
            continue
        t_k, front, other = t_min[keep], front[keep], other[keep]
        # a slanted edge is crossed by a horizontal and a vertical pair of the same pixel: each
        # pass blends by its share of the edge's normal (n_x^2 or n_y^2), so the two add up to one
        # blend, not two, and silhouettes keep their area
        bk = b[keep]
        ex = x[bk, e1[keep]] - x[bk, e0[keep]]
        ey = y[bk, e1[keep]] - y[bk, e0[keep]]
        share = ((ey if horizontal else ex) ** 2 / (ex**2 + ey**2).clamp(min=1e-12))[:, None]
        cf, co = flat_colour[front], flat_colour[other]
        into_other = share * (t_k - 0.5).clamp(min=0)[:, None]
        into_front = share * (0.5 - t_k).clamp(min=0)[:, None]
        delta = delta.index_add(0, other, into_other * (cf - co))
        delta = delta.index_add(0, front, into_front * (co - cf))
    return (flat_colour + delta).view_as(colour)
