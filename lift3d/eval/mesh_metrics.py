"""Comparing a mesh with a ground-truth mesh: Chamfer distance and volume IoU after alignment.

Definitions (also in README, "Comparing methods"):

- **alignment**: both meshes are moved so that the centroid of points sampled uniformly on
  their surface is at the origin, and scaled so that the RMS distance of those points from it
  is 1 (the ground truth's RMS radius is then put back, so distances are in world units of the
  ground truth). Like the silhouette IoU, this scores shape, not where or how big it came out.
- **Chamfer distance**: mean over points sampled on each surface of the distance to the nearest
  point sampled on the other surface, averaged over both directions (world units; the bundled
  objects are about 1 unit across).
- **volume IoU**: on a 32³ grid of cell centres over the union of both aligned bounding boxes,
  a point is inside a mesh when rays from it along at least two of the three axes cross the
  surface an odd number of times (a vote that tolerates small holes and flipped faces in
  meshes from other tools); the bundled world's ground truth uses the sign of its SDF
  instead. IoU of the two occupancies.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree


@dataclass
class Alignment:
    """``aligned = (points - centre) * scale``."""

    centre: np.ndarray
    scale: float

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (points - self.centre) * self.scale


def surface_samples(mesh, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points uniformly distributed (by area) on the surface of a trimesh, reproducibly."""
    import trimesh

    points, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(points, dtype=np.float64)


def alignment(points: np.ndarray, target_radius: float = 1.0) -> Alignment:
    """Centre at the centroid of ``points``; scale their RMS radius to ``target_radius``."""
    centre = points.mean(0)
    rms = float(np.sqrt(((points - centre) ** 2).sum(-1).mean()))
    if rms <= 0:
        raise ValueError("cannot align a mesh whose surface samples all coincide")
    return Alignment(centre, target_radius / rms)


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two point sets (N, 3) and (M, 3)."""
    d_ab, _ = cKDTree(b).query(a)
    d_ba, _ = cKDTree(a).query(b)
    return float((d_ab.mean() + d_ba.mean()) / 2)


Occupancy = Callable[[list[np.ndarray]], np.ndarray]
"""Inside test on a regular grid: three axis coordinate arrays (R,) -> bool (R, R, R) indexed [x, y, z]."""


def _crossings(v2: torch.Tensor, depth: torch.Tensor, cols: torch.Tensor, heights: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Per column (C, 2) and height (R,): how many triangles (projected ``v2`` (F, 3, 2), ``depth`` (F, 3)) lie below."""
    counts = torch.zeros(len(cols), len(heights) + 1, dtype=torch.float64)
    for start in range(0, len(v2), chunk):
        a, b, c = v2[start:start + chunk].unbind(1)  # (f, 2)
        d = depth[start:start + chunk]
        det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        ok = det.abs() > 1e-12
        p = cols[:, None, :] - a[None]  # (C, f, 2)
        w1 = (p[..., 0] * (c[:, 1] - a[:, 1]) - p[..., 1] * (c[:, 0] - a[:, 0])) / torch.where(ok, det, torch.ones_like(det))
        w2 = (p[..., 1] * (b[:, 0] - a[:, 0]) - p[..., 0] * (b[:, 1] - a[:, 1])) / torch.where(ok, det, torch.ones_like(det))
        hit = ok & (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
        ci, ti = hit.nonzero(as_tuple=True)
        if len(ci) == 0:
            continue
        z = d[ti, 0] + w1[ci, ti] * (d[ti, 1] - d[ti, 0]) + w2[ci, ti] * (d[ti, 2] - d[ti, 0])
        above = torch.searchsorted(heights, z)  # first height above the crossing
        counts.index_put_((ci, above), torch.ones_like(z), accumulate=True)
    return counts[:, :-1].cumsum(1)


def mesh_occupancy(vertices: np.ndarray, faces: np.ndarray) -> Occupancy:
    """Inside a mesh by ray parity along x, y and z, with a 2-of-3 vote (robust to small holes)."""
    tri = torch.as_tensor(np.asarray(vertices), dtype=torch.float64)[torch.as_tensor(np.asarray(faces), dtype=torch.long)]

    def occupancy(axes: list[np.ndarray]) -> np.ndarray:
        ax = [torch.as_tensor(a, dtype=torch.float64) for a in axes]
        votes = torch.zeros(len(ax[0]), len(ax[1]), len(ax[2]))
        for k in range(3):
            i, j = [d for d in range(3) if d != k]
            cols = torch.stack(torch.meshgrid(ax[i], ax[j], indexing="ij"), -1).reshape(-1, 2)
            odd = _crossings(tri[..., [i, j]], tri[..., k], cols, ax[k]).remainder(2).reshape(len(ax[i]), len(ax[j]), len(ax[k]))
            votes += odd.permute(*torch.argsort(torch.tensor([i, j, k])).tolist())  # back to [x, y, z]
        return (votes >= 2).numpy()

    return occupancy


def volume_iou(inside_a: Occupancy, inside_b: Occupancy, lo: np.ndarray, hi: np.ndarray, resolution: int = 32) -> float:
    """IoU of two occupancies on the cell centres of a ``resolution^3`` grid over the box [lo, hi]."""
    axes = [lo[i] + (np.arange(resolution) + 0.5) / resolution * (hi[i] - lo[i]) for i in range(3)]
    a, b = inside_a(axes), inside_b(axes)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def points_occupancy(inside: Callable[[np.ndarray], np.ndarray]) -> Occupancy:
    """An :data:`Occupancy` from a test on points (N, 3) -> bool (N,), e.g. the sign of an SDF."""

    def occupancy(axes: list[np.ndarray]) -> np.ndarray:
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        return inside(grid.reshape(-1, 3)).reshape(grid.shape[:3])

    return occupancy


def compare_meshes(
    mesh, ground_truth, ground_truth_inside: Callable[[np.ndarray], np.ndarray] | None = None, samples: int = 20000, resolution: int = 32
) -> dict[str, float]:
    """Chamfer distance and volume IoU of ``mesh`` against ``ground_truth`` after centre-and-scale alignment.

    ``ground_truth_inside`` (in the ground truth's own coordinates) replaces the winding number
    of ``ground_truth`` where an exact test exists, e.g. the sign of the world's SDF.
    """
    pts, gt_pts = surface_samples(mesh, samples, seed=0), surface_samples(ground_truth, samples, seed=1)
    gt_align = alignment(gt_pts)
    align = alignment(pts, target_radius=1.0 / gt_align.scale)  # into the ground truth's units, centred
    verts = align.apply(np.asarray(mesh.vertices, dtype=np.float64))
    gt_verts = np.asarray(ground_truth.vertices, dtype=np.float64) - gt_align.centre
    if ground_truth_inside is not None:
        gt_occupancy = points_occupancy(lambda p: ground_truth_inside(p + gt_align.centre))
    else:
        gt_occupancy = mesh_occupancy(gt_verts, np.asarray(ground_truth.faces))
    lo = np.minimum(verts.min(0), gt_verts.min(0))
    hi = np.maximum(verts.max(0), gt_verts.max(0))
    return {
        "chamfer": chamfer_distance(align.apply(pts), gt_pts - gt_align.centre),
        "volume_iou": volume_iou(mesh_occupancy(verts, np.asarray(mesh.faces)), gt_occupancy, lo, hi, resolution),
    }
