"""Volume rendering against closed forms, and empty-space skipping."""

import math
from dataclasses import dataclass

import pytest
import torch

from lift3d.backgrounds.solid_color import SolidColorBackground
from lift3d.data.random_camera import make_batch
from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput
from lift3d.materials.no_material import NoMaterial
from lift3d.renderers.volume import NeRFVolumeRenderer, composite_weights


class ConstantSphere(BaseImplicitGeometry):
    """Density ``sigma`` inside a sphere of radius ``r``, zero outside; red albedo."""

    @dataclass
    class Config:
        sigma: float = 2.0
        r: float = 0.5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.radius = 1.0
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.evaluated = 0

    def forward_density(self, points):
        self.evaluated += points.shape[0]
        return torch.where(points.norm(dim=-1) < self.cfg.r, self.cfg.sigma, 0.0) + 0 * self.dummy

    def forward(self, points, with_normal=False):
        feats = torch.tensor([1.0, 0.0, 0.0]).expand(points.shape[0], 3)
        return GeometryOutput(self.forward_density(points), feats, None)


def make_renderer(samples: int, estimator: str, geometry=None):
    geo = geometry or ConstantSphere(ConstantSphere.Config())
    cfg = NeRFVolumeRenderer.Config(num_samples_per_ray=samples, estimator=estimator, grid_resolution=32, randomized=False)
    bg = SolidColorBackground(SolidColorBackground.Config(color=(0.0, 0.0, 1.0)))
    renderer = NeRFVolumeRenderer(cfg, geo, NoMaterial(None), bg)
    return renderer.eval(), geo


def front_batch(res: int = 32):
    one = torch.ones(1)
    return make_batch(one * 0.0, one * 0.0, one * 3.0, one * 40.0, torch.tensor([[3.0, 0.0, 0.0]]), res)


@pytest.mark.parametrize("sigma", [0.5, 2.0, 8.0])
def test_constant_density_sphere_matches_closed_form_opacity(sigma):
    renderer, geo = make_renderer(1024, "none")
    geo.cfg.sigma = sigma
    batch = front_batch()
    with torch.no_grad():
        out = renderer(batch)
    o = batch.rays_o.reshape(-1, 3)
    d = batch.rays_d.reshape(-1, 3)
    # distance of each ray from the sphere centre -> chord length through the sphere
    b = (o - (o * d).sum(-1, keepdim=True) * d).norm(dim=-1)
    chord = 2 * torch.sqrt((0.5**2 - b**2).clamp(min=0))
    expected = 1 - torch.exp(-sigma * chord)
    got = out.opacity.reshape(-1)
    # midpoint sampling is exact up to one sample width (2 / 1024) on each chord end
    assert (got - expected).abs().max() < 1.5 * sigma * 2 / 1024 + 1e-4
    assert got.max() > 0.3
    # colour: red where opaque, blue background elsewhere
    rgb = out.comp_rgb.reshape(-1, 3)
    torch.testing.assert_close(rgb[:, 0], got, atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb[:, 2], 1 - got, atol=1e-5, rtol=0)


def test_composite_weights_of_a_single_slab():
    density = torch.tensor([[0.0, 3.0, 0.0]])
    deltas = torch.full((1, 3), 0.1)
    w = composite_weights(density, deltas)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1 - math.exp(-0.3), 0.0]]))


def test_occupancy_grid_skips_empty_space_without_changing_the_image():
    full, geo_full = make_renderer(128, "none")
    skip, geo_skip = make_renderer(128, "occgrid")
    skip.occupancy.update(geo_skip.forward_density)
    geo_skip.evaluated = 0
    batch = front_batch()
    with torch.no_grad():
        a = full(batch)
        b = skip(batch)
    # the grid is conservative at cell granularity: identical opacity wherever samples were kept
    assert (a.opacity - b.opacity).abs().max() < 1e-4
    assert b.samples_evaluated * 4 < a.samples_evaluated
    assert a.samples_evaluated == a.samples_total


def test_gradients_flow_to_geometry_parameters():
    from lift3d.geometry.implicit_volume import ImplicitVolume
    from lift3d.encodings.hash_grid import HashGridConfig

    cfg = ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10))
    geo = ImplicitVolume(cfg)
    renderer, _ = make_renderer(32, "none", geometry=geo)
    renderer.train()
    out = renderer(front_batch(8), need_normal=True)
    (out.comp_rgb.sum() + out.orient.sum()).backward()
    assert geo.encoding.table.grad.abs().sum() > 0
    assert geo.density_network[0].weight.grad.abs().sum() > 0


def test_nerfacc_compositing_matches_reference():
    nerfacc = pytest.importorskip("nerfacc")
    torch.manual_seed(0)
    density = torch.rand(64, 32) * 5
    t = torch.sort(torch.rand(64, 33) * 3, dim=1).values
    ours = composite_weights(density, t[:, 1:] - t[:, :-1])
    theirs, _, _ = nerfacc.render_weight_from_density(t[:, :-1], t[:, 1:], density)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_albedo_only_steps_build_no_normals_and_shaded_steps_do():
    """Normals (and the second-order graph of analytic normals) only on steps whose shading uses them."""
    from lift3d.encodings.hash_grid import HashGridConfig
    from lift3d.geometry.implicit_volume import ImplicitVolume
    from lift3d.materials.diffuse_with_point_light import DiffuseWithPointLight

    geo = ImplicitVolume(ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10)))
    material = DiffuseWithPointLight(DiffuseWithPointLight.Config(ambient_only_steps=10, textureless_prob=0.0, albedo_prob=0.0))
    bg = SolidColorBackground(SolidColorBackground.Config(color=(0.0, 0.0, 1.0)))
    renderer = NeRFVolumeRenderer(NeRFVolumeRenderer.Config(num_samples_per_ray=16, estimator="none"), geo, material, bg).train()
    calls = []
    original = geo.forward
    geo.forward = lambda pts, with_normal=False: calls.append(with_normal) or original(pts, with_normal=with_normal)
    material.update_step(0)  # warm-up: albedo only
    out = renderer(front_batch(8))
    assert material.shading == "albedo" and calls == [False] and out.comp_normal is None
    material.update_step(20)  # after warm-up: Lambert shading needs normals
    out = renderer(front_batch(8))
    assert material.shading == "diffuse" and calls == [False, True] and out.comp_normal is not None
    # a caller that asks for normals (orientation loss, validation images) still gets them
    material.update_step(0)
    assert renderer(front_batch(8), need_normal=True).comp_normal is not None


@pytest.mark.parametrize("sigma", [8.0, 40.0])
def test_early_ray_termination_changes_the_image_by_less_than_its_tolerance(sigma):
    full, geo = make_renderer(256, "occgrid")
    stop, _ = make_renderer(256, "occgrid", geometry=geo)
    stop.cfg.early_stop_eps = 1e-4
    geo.cfg.sigma = sigma
    for r in (full, stop):
        r.occupancy.update(geo.forward_density)
    batch = front_batch()
    with torch.no_grad():
        a, b = full(batch), stop(batch)
    assert (a.opacity - b.opacity).abs().max() < 2e-4
    assert (a.comp_rgb - b.comp_rgb).abs().max() < 2e-4
    # the evaluated samples lie in the sphere's cells; behind an opaque front (optical depth
    # sigma * 0.23 reaches ln 1e4 = 9.2 for sigma 40) most of them are skipped
    if sigma == 40.0:
        assert b.samples_evaluated < 0.6 * a.samples_evaluated


def test_early_ray_termination_keeps_gradients_of_the_visible_samples():
    from lift3d.encodings.hash_grid import HashGridConfig
    from lift3d.geometry.implicit_volume import ImplicitVolume

    torch.manual_seed(0)
    geo = ImplicitVolume(ImplicitVolume.Config(encoding=HashGridConfig(n_levels=4, log2_hashmap_size=10), density_blob_scale=30.0))
    grads = []
    for eps in (0.0, 1e-4):
        renderer, _ = make_renderer(128, "none", geometry=geo)
        renderer.cfg.early_stop_eps = eps
        geo.zero_grad()
        renderer(front_batch(12)).comp_rgb.sum().backward()
        grads.append(geo.encoding.table.grad.clone())
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.999 and (grads[0] - grads[1]).norm() / grads[0].norm() < 0.02


@pytest.mark.parametrize("sigma, passes", [(8.0, [True, False, False, False, True, False]), (40.0, [True] * 6)])
def test_the_density_only_pass_is_skipped_while_it_does_not_pay(sigma, passes):
    """Through a translucent sphere the pass drops under 10 % of the samples: the next renders
    skip it and every 4th probes again; behind an opaque front it runs on every render."""
    renderer, geo = make_renderer(256, "occgrid")
    renderer.cfg.early_stop_eps = 1e-4
    renderer.cfg.early_stop_probe_every = 4
    geo.cfg.sigma = sigma
    renderer.occupancy.update(geo.forward_density)
    ran = []
    original = renderer._visible
    renderer._visible = lambda *a: ran.append(True) or original(*a)
    seen = []
    with torch.no_grad():
        for _ in passes:
            before = len(ran)
            renderer(front_batch())
            seen.append(len(ran) > before)
    assert seen == passes


def test_sampling_only_inside_the_occupied_box_renders_the_same_image_from_fewer_candidates():
    renderer, geo = make_renderer(256, "occgrid")
    renderer.occupancy.update(geo.forward_density)
    lo, hi = renderer.occupancy.occupied_box()
    r = geo.radius
    # the sphere of radius 0.5 (plus the grid's one-cell dilation) inside a scene of radius r
    assert (lo > -r).all() and (hi < r).all() and (lo <= -0.5).all() and (hi >= 0.5).all()
    sizes = []
    query = renderer.occupancy.query
    renderer.occupancy.query = lambda pts: sizes.append(pts.shape[0]) or query(pts)
    batch = front_batch()
    with torch.no_grad():
        boxed = renderer(batch)
        renderer.occupancy.occupied_box = lambda: (torch.full((3,), -r), torch.full((3,), r))
        whole = renderer(batch)
    assert sizes[0] < 0.5 * sizes[1]
    assert boxed.samples_evaluated == whole.samples_evaluated
    for a, b in ((boxed.comp_rgb, whole.comp_rgb), (boxed.opacity, whole.opacity), (boxed.depth, whole.depth)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_occupied_box_of_one_cell_and_of_none():
    from lift3d.renderers.occupancy_grid import OccupancyGrid

    grid = OccupancyGrid(radius=1.0, resolution=8, threshold=1.0, decay=0.9)
    density = torch.zeros(8, 8, 8)
    density[4, 2, 6] = 5.0
    grid.update(lambda p: density.reshape(-1)[grid.cell_index(p)])
    lo, hi = grid.occupied_box()
    # the cell and its one-cell dilation: cells 3..5, 1..3, 5..7 of 8 over [-1, 1]
    torch.testing.assert_close(lo, torch.tensor([-0.25, -0.75, 0.25]))
    torch.testing.assert_close(hi, torch.tensor([0.5, 0.0, 1.0]))
    grid.update(lambda p: torch.zeros(p.shape[0]))  # EMA decays 5 -> 4.5, still occupied
    assert grid.occupied_box() is not None
    empty = OccupancyGrid(radius=1.0, resolution=8, threshold=1.0, decay=0.9)
    empty.update(lambda p: torch.zeros(p.shape[0]))
    # an all-zero field: the threshold falls to the mean (0) and every cell counts (never all off)
    assert empty.occupied_box() is not None
