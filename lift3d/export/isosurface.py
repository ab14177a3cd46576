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


def extract_isosurface(geometry, resolution: int = 128, threshold: float | None = None) -> Mesh:
    """Marching cubes on the density grid; ``threshold`` None picks one automatically."""
    from skimage.measure import marching_cubes

    density = geometry.density_grid(resolution).cpu().numpy()
    level = auto_threshold(density) if threshold is None else threshold
    if not (density.min() < level < density.max()):
        raise RunError(
            f"the isosurface at density {level:g} is empty (densities span {density.min():.3g} to {density.max():.3g}); "
            "pick a threshold inside that range"
        )
    verts, faces, _, _ = marching_cubes(density, level=level)
    # grid index -> world: cell centres of a grid over [-radius, radius]^3
    verts = ((verts + 0.5) / resolution * 2 - 1) * geometry.radius
    # density grows inwards, so scikit-image's winding faces inwards: flip it
    faces = faces[:, ::-1].copy()
    return Mesh(verts.astype(np.float32), faces.astype(np.int64))


@torch.no_grad()
def vertex_albedo(geometry, material, vertices: np.ndarray, chunk: int = 65536) -> np.ndarray:
    device = next(geometry.parameters()).device
    pts = torch.from_numpy(vertices).to(device)
    out = [material.albedo(geometry(p).features) for p in pts.split(chunk)]
    return torch.cat(out).cpu().numpy().astype(np.float32)
