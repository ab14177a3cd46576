"""Isosurface extraction from an implicit geometry's density (marching cubes, scikit-image)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lift3d.errors import RunError


@dataclass
class Mesh:
    """A triangle mesh with per-vertex colours."""

    vertices: np.ndarray
    """(V, 3) float32 world coordinates."""
    faces: np.ndarray
    """(F, 3) int64 vertex indices, counter-clockwise seen from outside."""
    colors: np.ndarray | None = None
    """(V, 3) float32 in [0, 1]."""


def auto_threshold(density: np.ndarray) -> float:
    """Otsu's threshold between empty space and the object, on log density."""
    from skimage.filters import threshold_otsu

    logd = np.log(np.clip(density, 1e-6, None)).ravel()
    return float(np.exp(threshold_otsu(logd)))


def occupied_bbox(geometry, resolution: int, level: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Box around the coarse grid's cells above ``level``, padded by one cell."""
    density = geometry.density_grid(resolution).cpu().numpy()
    occupied = np.argwhere(density > level)
    if len(occupied) == 0:
        return None
    cell = 2 * geometry.radius / resolution
    lo = np.clip(-geometry.radius + (occupied.min(0) - 1) * cell, -geometry.radius, geometry.radius)
    hi = np.clip(-geometry.radius + (occupied.max(0) + 2) * cell, -geometry.radius, geometry.radius)
    return torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)


def scene_box(geometry) -> tuple[torch.Tensor, torch.Tensor]:
    r = geometry.radius
    return torch.full((3,), -float(r)), torch.full((3,), float(r))


def marching_cubes_mesh(density: np.ndarray, level: float, lo: torch.Tensor, hi: torch.Tensor) -> Mesh:
    """Marching cubes at ``level`` on a grid of cell centres over the box ``[lo, hi]``."""
    from skimage.measure import marching_cubes

    if not (density.min() < level < density.max()):
        raise RunError(
            f"the isosurface at density {level:g} is empty (densities span {density.min():.3g} to {density.max():.3g}); "
            "pick export.threshold inside that range"
        )
    resolution = density.shape[0]
    verts, faces, _, _ = marching_cubes(density, level=level)
    # grid index -> world: cell centres of a grid over the box [lo, hi]
    verts = lo.numpy() + (verts + 0.5) / resolution * (hi - lo).numpy()
    # density grows inwards, so scikit-image's winding faces inwards: flip it
    faces = faces[:, ::-1].copy()
    return Mesh(verts.astype(np.float32), faces.astype(np.int64))


def extract_isosurface(geometry, resolution: int = 128, threshold: float | None = None, coarse_to_fine: bool = False) -> Mesh:
    """Marching cubes on the density grid; ``threshold`` None picks one by Otsu's method.

    ``coarse_to_fine`` first finds the occupied box on a grid a quarter as fine, then spends the
    full ``resolution`` on that box only (finer triangles for the same cost).
    """
    lo, hi = scene_box(geometry)
    if coarse_to_fine:
        coarse = max(resolution // 4, 16)
        level = threshold if threshold is not None else auto_threshold(geometry.density_grid(coarse).cpu().numpy())
        box = occupied_bbox(geometry, coarse, level)
        if box is not None:
            lo, hi = box
    density = geometry.density_grid(resolution, bbox=(lo, hi)).cpu().numpy()
    level = auto_threshold(density) if threshold is None else threshold
    return marching_cubes_mesh(density, level, lo, hi)


@torch.no_grad()
def vertex_albedo(geometry, material, vertices: np.ndarray, chunk: int = 65536) -> np.ndarray:
    device = next(geometry.parameters()).device
    pts = torch.from_numpy(vertices).to(device)
    out = [material.albedo(geometry.features_at(p)) for p in pts.split(chunk)]
    return torch.cat(out).cpu().numpy().astype(np.float32)
