"""Ground truth of the bundled world for evaluation: SDF grids, meshes, masks."""

from __future__ import annotations

import numpy as np
import torch

from lift3d.priors.world import conventions as conv
from lift3d.priors.world.shapes import object_sdf


def sdf_grid(kind: str, resolution: int = 96) -> np.ndarray:
    """Signed distance on cell centres of a ``resolution^3`` grid over the scene box, indexed [x, y, z]."""
    lin = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3) * conv.SCENE_RADIUS
    d = torch.cat([object_sdf(kind, p)[0] for p in pts.split(262144)])
    return d.reshape(resolution, resolution, resolution).numpy()


def ground_truth_mesh(kind: str, resolution: int = 128):
    """The object's surface as a watertight trimesh (marching cubes on its SDF), outward winding."""
    import trimesh
    from skimage.measure import marching_cubes

    d = sdf_grid(kind, resolution)
    verts, faces, _, _ = marching_cubes(d, level=0.0)
    verts = ((verts + 0.5) / resolution * 2 - 1) * conv.SCENE_RADIUS
    mesh = trimesh.Trimesh(verts, faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh
