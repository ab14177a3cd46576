"""Chamfer distance, ray-parity occupancy and volume IoU against plain references."""

import numpy as np
import pytest
import torch
import trimesh

from lift3d.eval.mesh_metrics import alignment, chamfer_distance, compare_meshes, mesh_occupancy, points_occupancy, volume_iou
from lift3d.priors.world.ground_truth import ground_truth_mesh
from lift3d.priors.world.shapes import object_sdf


def winding_numbers(points, vertices, faces):
    """Plain reference: generalised winding number (solid angle / 4 pi, Van Oosterom-Strackee), float64."""
    tri = torch.as_tensor(vertices, dtype=torch.float64)[torch.as_tensor(faces, dtype=torch.long)]
    out = []
    for p in torch.as_tensor(points, dtype=torch.float64).split(256):
        a, b, c = (tri[None] - p[:, None, None, :]).unbind(2)
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out.append(torch.atan2(det, den).sum(-1) / (2 * torch.pi))
    return torch.cat(out).numpy()


def _axes(lo, hi, n, offset=0.0137):
    # cell centres nudged off the mesh's symmetry planes, so no ray runs exactly along an edge
    return [lo + (np.arange(n) + 0.5) / n * (hi - lo) + offset * (i + 1) for i in range(3)]


@pytest.mark.parametrize("make", [
    lambda: trimesh.creation.icosphere(3, 0.6),
    lambda: trimesh.creation.box((0.8, 0.5, 1.1)),
    lambda: trimesh.creation.torus(0.5, 0.18),
])
def test_parity_occupancy_matches_winding_numbers(make):
    mesh = make()
    axes = _axes(-0.9, 0.9, 20)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    ours = mesh_occupancy(mesh.vertices, mesh.faces)(axes).reshape(-1)
    reference = np.abs(winding_numbers(grid, mesh.vertices, mesh.faces)) > 0.5
    assert ours.sum() > 100
    assert (ours == reference).mean() > 0.995


def test_occupancy_vote_tolerates_a_hole_and_flipped_faces():
    sphere = trimesh.creation.icosphere(3, 0.6)
    faces = sphere.faces.copy()
    faces[::7] = faces[::7, ::-1]  # flipped winding does not change parity
    holed = faces[np.abs(sphere.vertices[faces].mean(1)[:, 2] - 0.6) > 0.05]  # cap removed at the top
    axes = _axes(-0.8, 0.8, 24)
    exact = points_occupancy(lambda p: np.linalg.norm(p, axis=-1) < 0.6)(axes)
    ours = mesh_occupancy(sphere.vertices, holed)(axes)
    assert (ours == exact).mean() > 0.98


def test_volume_iou_of_two_spheres_matches_the_analytic_value():
    a = points_occupancy(lambda p: np.linalg.norm(p, axis=-1) < 0.5)
    b = points_occupancy(lambda p: np.linalg.norm(p - [0.25, 0, 0], axis=-1) < 0.5)
    # lens volume of two unit-0.5 spheres 0.25 apart: pi (4r + d)(2r - d)^2 / 12
    r, d = 0.5, 0.25
    inter = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12
    whole = 4 / 3 * np.pi * r**3
    expected = inter / (2 * whole - inter)
    got = volume_iou(a, b, np.array([-0.6, -0.6, -0.6]), np.array([0.85, 0.6, 0.6]), resolution=64)
    assert got == pytest.approx(expected, abs=0.01)


def test_chamfer_distance_of_shifted_point_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    assert chamfer_distance(a, a) == 0.0
    assert chamfer_distance(a, a + [0.001, 0, 0]) == pytest.approx(0.001, rel=1e-6)


def test_alignment_normalises_centre_and_rms_radius():
    pts = np.random.default_rng(1).normal(size=(500, 3)) * 3 + 7
    moved = alignment(pts, target_radius=0.4).apply(pts)
    assert np.allclose(moved.mean(0), 0, atol=1e-9)
    assert np.sqrt((moved**2).sum(-1).mean()) == pytest.approx(0.4)


def test_compare_meshes_is_invariant_to_centre_and_scale_and_ranks_shapes():
    gt = ground_truth_mesh("house", resolution=64)

    def inside(p):
        return (object_sdf("house", torch.as_tensor(p, dtype=torch.float32))[0] < 0).numpy()

    same = compare_meshes(gt, gt, inside)
    moved = gt.copy()
    moved.vertices = moved.vertices * 1.7 + [0.3, -0.2, 0.1]
    shifted = compare_meshes(moved, gt, inside)
    ball = compare_meshes(trimesh.creation.icosphere(3, 0.5), gt, inside)
    assert same["volume_iou"] > 0.97 and same["chamfer"] < 0.02
    assert shifted["volume_iou"] == pytest.approx(same["volume_iou"], abs=0.01)
    assert shifted["chamfer"] == pytest.approx(same["chamfer"], abs=0.002)
    assert ball["volume_iou"] < same["volume_iou"] - 0.15
    assert ball["chamfer"] > 3 * same["chamfer"]
