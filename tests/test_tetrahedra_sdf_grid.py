"""The ``tetrahedra-sdf-grid`` geometry's options (as threestudio has them) and its DMTet parametrisation."""

import torch

from lift3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid


def grid(**kw) -> TetrahedraSDFGrid:
    return TetrahedraSDFGrid(TetrahedraSDFGrid.Config(isosurface_resolution=12, **kw))


def test_fix_geometry_trains_only_the_colour_field_and_still_saves_the_shape():
    fixed = grid(fix_geometry=True)
    names = {n for n, _ in fixed.named_parameters()}
    assert "sdf" not in names and "deformation" not in names and any(n.startswith("encoding.") for n in names)
    assert {"sdf", "deformation"} <= set(fixed.state_dict()) and "grid_tets" not in fixed.state_dict()
    assert {"sdf", "deformation"} <= {n for n, _ in grid().named_parameters()}


def test_geometry_only_has_no_colour_field_and_a_constant_albedo():
    g = grid(geometry_only=True, geometry_only_albedo=0.3)
    assert not hasattr(g, "encoding") and list(n for n, _ in g.named_parameters()) == ["sdf", "deformation"]
    assert torch.equal(g.features_at(torch.rand(5, 3)), torch.full((5, 3), 0.3))


def test_deformation_is_bounded_and_moves_the_surface():
    g = grid(max_deformation=0.4)
    with torch.no_grad():
        g.deformation.fill_(100.0)  # tanh saturates: every vertex moves 0.4 cells along +x, +y, +z
    moved = g.deformed_vertices() - g.grid_vertices
    assert torch.allclose(moved, torch.full_like(moved, 0.4 * g.cell_size))
    assert torch.equal(grid(isosurface_deformable_grid=False).deformed_vertices(), g.grid_vertices)
    a = grid().isosurface().v_pos.mean(0)
    b = g.isosurface().v_pos.mean(0)
    assert torch.allclose(b - a, torch.full((3,), 0.4 * g.cell_size), atol=1e-5)


def test_starts_as_a_sphere_of_the_configured_radius_and_drops_outliers():
    g = grid(init_sphere_radius=0.6)
    r = g.isosurface().v_pos.norm(dim=-1)
    assert (r - 0.6).abs().max() < 0.25 * g.cell_size
    with torch.no_grad():  # a second, tiny blob far from the sphere
        far = (g.grid_vertices - torch.tensor([0.85, 0.85, 0.85])).norm(dim=-1)
        g.sdf.copy_(torch.minimum(g.sdf, far - 0.1))
    assert len(torch.unique(g.isosurface().component_labels())) == 2
    g.cfg.isosurface_remove_outliers = True
    g.cfg.isosurface_outlier_n_faces_threshold = 0.2  # a fifth of the faces
    assert len(torch.unique(g.isosurface().component_labels())) == 1
