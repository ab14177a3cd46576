"""The density level whose surface is the one the NeRF's renders show.

A trained NeRF carries low-density haze around its object. A threshold chosen from the density
values alone (Otsu's method on log density) often closes the surface around the haze, giving an
export far bigger than the rendered object. This rule picks the level from the renders instead:

* the NeRF's silhouettes are its opacity > 0.5 from a few cameras (the renderer's own opacity
  model, so haze too thin to be seen is not part of the object);
* the level set ``{density > L}`` of the density grid covers a pixel exactly when the largest
  density along the pixel's ray exceeds ``L``; so one pass of ray maxima over the grid gives every
  candidate level's silhouettes at once;
* the level maximising the silhouettes' IoU with the NeRF's is found exactly by sorting the ray
  maxima (one cumulative sum), and returned with that IoU.

One level for the whole field cannot follow the renders everywhere: where the NeRF is thin haze
over a concave part (a snowman's neck) the level set closes it while the renders show the gap.
:func:`silhouette_hull` carves those cells first: a cell that some camera sees outside the
NeRF's silhouette is not part of the object (a visual hull of the renders).

The same rule serves any conversion of a density field to a surface (mesh export, NeRF to DMTet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from lift3d.geometry.base import cell_centres
from lift3d.renderers.volume import ray_box_intersect


@dataclass
class SurfaceLevel:
    """A chosen isosurface level and how well its silhouettes match the renders'."""

    level: float
    """Density of the isosurface."""
    silhouette_iou: float
    """IoU of the level set's silhouettes with the NeRF's (opacity > 0.5), pooled over the cameras."""
    rule: Literal["silhouettes", "otsu", "user", "mesh"]
    """How it was chosen: ``silhouettes``, ``otsu`` or ``user``; ``mesh``: a mesh geometry's own surface (no level)."""


def ray_max_density(
    grid: Float[Tensor, "R R R"], lo: Tensor, hi: Tensor, rays_o: Float[Tensor, "N 3"], rays_d: Float[Tensor, "N 3"],
    samples_per_cell: float = 2.0, chunk: int = 8192,
) -> Float[Tensor, "N"]:
    """Largest trilinearly interpolated density along each ray inside the grid's box (0 for a miss).

    ``grid`` holds densities at the cell centres of a regular grid over the box ``[lo, hi]``,
    indexed [x, y, z] (as ``density_grid`` returns it).
    """
    r = grid.shape[0]
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    n_s = max(int(samples_per_cell * r * 3**0.5), 8)
    vol = grid.permute(2, 1, 0)[None, None].float()  # grid_sample reads (D, H, W) = (z, y, x)
    out = []
    for o, d in zip(rays_o.split(chunk), rays_d.split(chunk)):
        # intersect in the box's own frame: a cube of half-size 1 after scaling
        o_n, d_n = (o - centre) / half, d / half
        near, far, hit = ray_box_intersect(o_n, d_n, 1.0)
        t = torch.linspace(0, 1, n_s, dtype=o.dtype)[None]
        ts = near[:, None] + (far - near).clamp(min=0)[:, None] * t
        pts = o_n[:, None] + ts[..., None] * d_n[:, None]  # in [-1, 1]^3, world box corners at ±1
        # cell centres sit at ±(1 - 1/r): align_corners=False maps exactly that
        vals = F.grid_sample(vol, pts[None, None].to(vol.dtype), mode="bilinear", padding_mode="border", align_corners=False)
        m = vals[0, 0, 0].amax(dim=-1)
        out.append(torch.where(hit, m, torch.zeros_like(m)))
    return torch.cat(out)


def best_level(ray_max: Float[Tensor, "N"], target: Bool[Tensor, "N"]) -> tuple[float, float]:
    """``(level, IoU)`` maximising the IoU of ``ray_max > level`` with ``target``, over all levels.

    Sorting the ray maxima in decreasing order, a level just below the k-th value covers the first
    k pixels: its intersection is the cumulative count of target pixels, its union k + |target| - that.
    The level returned is the geometric mean of the k-th and (k+1)-th values (log-density midpoint).
    """
    values, order = ray_max.double().sort(descending=True)
    hits = target[order].double().cumsum(0)
    k = torch.arange(1, len(values) + 1, dtype=torch.float64)
    iou = hits / (k + target.sum() - hits)
    # only where the next value is strictly smaller can a level separate the first k pixels
    distinct = torch.ones_like(values, dtype=torch.bool)
    distinct[:-1] = values[:-1] > values[1:]
    iou = torch.where(distinct, iou, torch.full_like(iou, -1.0))
    best = int(iou.argmax())
    upper = float(values[best])
    lower = float(values[best + 1]) if best + 1 < len(values) else 0.0
    level = (max(upper, 1e-12) * max(lower, 1e-12)) ** 0.5 if lower > 0 else upper / 2
    return level, float(iou[best])


def silhouette_hull(
    cameras: list, nerf_opacity: list[Tensor], lo: Tensor, hi: Tensor, resolution: int,
) -> Bool[Tensor, "R R R"]:
    """Cells of a regular grid over the box ``[lo, hi]`` (centres, indexed [x, y, z]) that no camera
    sees outside ``nerf_opacity > 0.5``: the visual hull of the NeRF's silhouettes. A cell a camera
    does not see (outside its image, or behind it) is kept by that camera."""
    pts = cell_centres(lo, hi, resolution).reshape(-1, 3)
    hom = torch.cat([pts, torch.ones(len(pts), 1)], dim=1)
    keep = torch.ones(len(pts), dtype=torch.bool)
    for batch, opacity in zip(cameras, nerf_opacity):
        for mvp, image in zip(batch.mvp.float().cpu(), opacity.float().cpu()):
            clip = hom @ mvp.T
            w = clip[:, 3:4]
            ndc = clip[:, :2] / w.clamp(min=1e-6)
            seen = (w[:, 0] > 0) & (ndc.abs() <= 1).all(dim=-1)
            # image row 0 is NDC y = +1 (the rasterizer's convention); grid_sample's y = -1 is row 0
            grid = torch.stack([ndc[:, 0], -ndc[:, 1]], dim=-1)[None, None]
            inside = F.grid_sample(image[None, None], grid, mode="bilinear", align_corners=False)[0, 0, 0] > 0.5
            keep &= inside | ~seen
    return keep.reshape(resolution, resolution, resolution)


def silhouette_matched_level(
    grid: Float[Tensor, "R R R"], lo: Tensor, hi: Tensor, cameras: list, nerf_opacity: list[Tensor],
) -> SurfaceLevel:
    """The level whose silhouettes best match ``nerf_opacity > 0.5`` from ``cameras`` (CameraBatch list)."""
    maxima, targets = [], []
    for batch, opacity in zip(cameras, nerf_opacity):
        maxima.append(ray_max_density(grid, lo, hi, batch.rays_o.reshape(-1, 3).float(), batch.rays_d.reshape(-1, 3).float()))
        targets.append(opacity.reshape(-1) > 0.5)
    level, iou = best_level(torch.cat(maxima), torch.cat(targets))
    # interpolated ray maxima may exceed the grid's largest value by a rounding error (a field of
    # constant density): the level must leave that value inside
    top = grid.max()
    level = min(level, float(torch.nextafter(top, torch.zeros_like(top))))
    return SurfaceLevel(level, iou, "silhouettes")
