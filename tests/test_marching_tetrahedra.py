"""The tetrahedral grid, marching tetrahedra on analytic SDFs, and the triangle mesh's measures."""

import math

import pytest
import torch

from lift3d.geometry.marching_tetrahedra import marching_tetrahedra
from lift3d.geometry.tetrahedra_grid import tetrahedral_grid
from lift3d.geometry.triangle_mesh import TriangleMesh


def sphere(p, r=0.55):
    return p.norm(dim=-1) - r


def box(p, half=(0.47, 0.33, 0.41)):  # faces off the grid planes (a zero SDF at a vertex gives slivers)
    q = p.abs() - torch.tensor(half, dtype=p.dtype)
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def torus(p, big=0.5, small=0.2):
    ring = torch.stack([p[:, :2].norm(dim=-1) - big, p[:, 2]], dim=-1)
    return ring.norm(dim=-1) - small


def sdf_gradient(f, p):
    p = p.detach().requires_grad_(True)
    return torch.autograd.grad(f(p).sum(), p)[0]


def euler_characteristic(mesh: TriangleMesh) -> int:
    return len(mesh.v_pos) - len(mesh.edges()) + mesh.n_faces


def is_watertight(mesh: TriangleMesh) -> bool:
    """Every directed edge appears once and its reverse once: closed and consistently wound."""
    f = mesh.t_idx
    half = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    n = len(mesh.v_pos)
    key, twin = half[:, 0] * n + half[:, 1], half[:, 1] * n + half[:, 0]
    return len(torch.unique(key)) == len(key) and bool(torch.isin(twin, key).all())


def signed_volume(mesh: TriangleMesh) -> float:
    p = mesh.v_pos[mesh.t_idx]
    return float((torch.linalg.cross(p[:, 0], p[:, 1]) * p[:, 2]).sum() / 6)


def test_grid_is_positively_oriented_conforming_and_fills_the_box():
    v, t = tetrahedral_grid(5, radius=1.5)
    assert v.shape == (6**3, 3) and t.shape == (6 * 5**3, 4)
    e = (v[t[:, 1:]] - v[t[:, :1]]).double()
    volume = torch.linalg.det(e) / 6
    assert (volume > 0).all()
    assert volume.sum().item() == pytest.approx(3.0**3)
    # conforming: an interior triangle belongs to exactly two tetrahedra, a boundary one to one
    faces = torch.cat([t[:, [0, 1, 2]], t[:, [0, 1, 3]], t[:, [0, 2, 3]], t[:, [1, 2, 3]]]).sort(dim=1).values
    _, counts = torch.unique(faces, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    assert int((counts == 1).sum()) == 6 * 5**2 * 2  # two triangles per boundary square


@pytest.mark.parametrize("shape, genus", [(sphere, 0), (box, 0), (torus, 1)])
def test_surfaces_of_analytic_sdfs_are_watertight_outward_and_on_the_surface(shape, genus):
    res = 32
    v, t = tetrahedral_grid(res, radius=1.0)
    verts, faces = marching_tetrahedra(v, t, shape(v))
    mesh = TriangleMesh(verts, faces)
    assert is_watertight(mesh)
    assert euler_characteristic(mesh) == 2 - 2 * genus
    # outward: the enclosed signed volume is positive, and face normals agree with the SDF's
    # gradient at the face centres (across a box's edges a face may be perpendicular to it)
    assert signed_volume(mesh) > 0
    centre = verts[faces].mean(1)
    agree = (mesh.face_normals() * torch.nn.functional.normalize(sdf_gradient(shape, centre), dim=-1)).sum(-1)
    assert (agree > -0.05).all()
    assert agree.mean() > 0.9
    # vertices lie on the true surface up to the error of linear interpolation along an edge
    cell = 2.0 / res
    assert shape(verts).abs().max() < 0.25 * cell


def test_face_count_grows_with_the_square_of_the_resolution():
    counts = []
    for res in (16, 32, 64):
        v, t = tetrahedral_grid(res)
        counts.append(marching_tetrahedra(v, t, sphere(v))[1].shape[0])
    for coarse, fine in zip(counts, counts[1:]):
        assert 3.6 < fine / coarse < 4.4


def test_all_outside_or_all_inside_gives_an_empty_mesh():
    v, t = tetrahedral_grid(4)
    for value in (1.0, -1.0):
        verts, faces = marching_tetrahedra(v, t, torch.full((len(v),), value))
        assert verts.shape == (0, 3) and faces.shape == (0, 3)


def test_vertices_are_differentiable_in_sdf_and_positions_gradcheck():
    v, t = tetrahedral_grid(3, radius=1.0)
    v = v.double()
    sdf = sphere(v, 0.6) + 0.01 * torch.sin(7 * v).sum(-1)

    def vertices(sdf_values, positions):
        return marching_tetrahedra(positions, t, sdf_values)[0]

    assert torch.autograd.gradcheck(vertices, (sdf.requires_grad_(True), v.clone().requires_grad_(True)))


def test_mesh_measures():
    v, t = tetrahedral_grid(24)
    mesh = TriangleMesh(*marching_tetrahedra(v, t, sphere(v)))
    # vertex normals of a sphere point away from its centre
    assert (mesh.vertex_normals() * torch.nn.functional.normalize(mesh.v_pos, dim=-1)).sum(-1).min() > 0.95
    # a sphere is smooth: small normal consistency; jitter makes it larger, and the Laplacian too
    rough = TriangleMesh(mesh.v_pos + 0.02 * torch.randn(mesh.v_pos.shape, generator=torch.Generator().manual_seed(0)), mesh.t_idx)
    assert mesh.normal_consistency() < 0.05 < rough.normal_consistency()
    assert mesh.laplacian_smoothness() < rough.laplacian_smoothness()
    # a flat square has zero normal consistency
    square = TriangleMesh(torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2], [0, 2, 3]]))
    assert square.normal_consistency().item() == pytest.approx(0.0, abs=1e-7)
    assert len(square.face_pairs()) == 1


def test_small_components_are_removed_with_their_vertices():
    v, t = tetrahedral_grid(32)
    two = torch.minimum(sphere(v - torch.tensor([0.3, 0, 0]), 0.5), sphere(v + torch.tensor([0.75, 0, 0]), 0.12))
    mesh = TriangleMesh(*marching_tetrahedra(v, t, two))
    assert len(torch.unique(mesh.component_labels())) == 2
    big = mesh.remove_small_components(0.2)
    assert len(torch.unique(big.component_labels())) == 1
    assert is_watertight(big) and euler_characteristic(big) == 2
    assert big.v_pos[:, 0].min() > -0.25  # the small sphere on the -x side is gone
    assert len(big.v_pos) == len(torch.unique(big.t_idx))
    assert mesh.remove_small_components(10).n_faces == mesh.n_faces


def test_mesh_volume_matches_the_sphere():
    v, t = tetrahedral_grid(32)
    mesh = TriangleMesh(*marching_tetrahedra(v, t, sphere(v, 0.6)))
    assert signed_volume(mesh) == pytest.approx(4 / 3 * math.pi * 0.6**3, rel=0.02)
