"""The mesh renderer: agreement with the volume renderer, gradients to the SDF and deformations, a silhouette fit."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lift3d.backgrounds.solid_color import SolidColorBackground
from lift3d.data.random_camera import make_batch
from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput
from lift3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid
from lift3d.materials.no_material import NoMaterial
from lift3d.renderers.mesh_rasterize import MeshRasterizeRenderer
from lift3d.renderers.volume import NeRFVolumeRenderer


class OpaqueSphere(BaseImplicitGeometry):
    """A nearly opaque ball of radius ``r`` with exact outward normals."""

    @dataclass
    class Config:
        r: float = 0.5
        sigma: float = 500.0

    def __init__(self, cfg):
        super().__init__(cfg)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward_density(self, points):
        return torch.where(points.norm(dim=-1) < self.cfg.r, self.cfg.sigma, 0.0) + 0 * self.dummy

    def forward(self, points, with_normal=False):
        feats = torch.full((points.shape[0], 3), 0.5)
        return GeometryOutput(self.forward_density(points), feats, F.normalize(points, dim=-1) if with_normal else None)


def background():
    return SolidColorBackground(SolidColorBackground.Config(color=(0.0, 0.0, 0.0)))


def mesh_renderer(resolution=32, **geometry):
    geo = TetrahedraSDFGrid(TetrahedraSDFGrid.Config(isosurface_resolution=resolution, geometry_only=True, **geometry))
    return MeshRasterizeRenderer(MeshRasterizeRenderer.Config(), geo, NoMaterial(None), background()), geo


def orbit(n: int, res: int, elevations=(15.0, -10.0, 50.0)):
    az = torch.linspace(0, 360, n + 1)[:-1]
    el = torch.tensor(elevations).repeat(n)[:n]
    one = torch.ones(n)
    return make_batch(el, az, one * 2.5, one * 45.0, torch.zeros(n, 3) + 3.0, res)


def cube_mask(batch, half=0.4):
    o, d = batch.rays_o.reshape(-1, 3), batch.rays_d.reshape(-1, 3)
    t0, t1 = (-half - o) / d, (half - o) / d
    hit = torch.minimum(t0, t1).amax(-1) < torch.maximum(t0, t1).amin(-1)
    return hit.float().reshape(batch.size, batch.height, batch.width, 1)


def iou(a, b):
    return float((a & b).sum() / (a | b).sum())


def test_mesh_and_volume_renderers_agree_on_an_opaque_sphere():
    batch = orbit(4, 48)
    mesh, _ = mesh_renderer(32, init_sphere_radius=0.5)
    vol = NeRFVolumeRenderer(NeRFVolumeRenderer.Config(num_samples_per_ray=512, estimator="none", randomized=False),
                             OpaqueSphere(OpaqueSphere.Config()), NoMaterial(None), background()).eval()
    with torch.no_grad():
        a, b = mesh.eval()(batch), vol(batch, need_normal=True)
    assert iou(a.opacity > 0.5, b.opacity > 0.5) > 0.97
    both = ((a.opacity > 0.99) & (b.opacity > 0.99))[..., 0]
    cos = (F.normalize(a.comp_normal, dim=-1) * F.normalize(b.comp_normal, dim=-1)).sum(-1)[both]
    assert cos.mean() > 0.99 and cos.min() > 0.9
    assert (a.depth[both] - b.depth[both]).abs().mean() < 0.02
    assert a.comp_rgb.shape == b.comp_rgb.shape and a.mesh is not None and b.mesh is None


def test_silhouette_gradients_reach_sdf_and_deformations_gradcheck():
    renderer, geo = mesh_renderer(4, init_sphere_radius=0.6)
    renderer = renderer.double()
    batch = orbit(2, 12)
    sdf = (geo.sdf.detach() + 0.02 * torch.sin(5 * geo.grid_vertices).sum(-1)).double().requires_grad_(True)
    deformation = (0.1 * torch.cos(3 * geo.grid_vertices)).double().requires_grad_(True)

    def opacity(s, d):
        return functional_call(renderer, {"geometry.sdf": s, "geometry.deformation": d}, (batch,)).opacity

    out = opacity(sdf, deformation)
    assert ((out > 0) & (out < 1)).any()  # anti-aliased silhouette pixels exist
    assert torch.autograd.gradcheck(opacity, (sdf, deformation), atol=1e-6)
    g_sdf, g_def = torch.autograd.grad(out.sum(), (sdf, deformation))
    assert g_sdf.abs().sum() > 0 and g_def.abs().sum() > 0


def test_a_sphere_fitted_to_cube_silhouettes_becomes_the_cube():
    torch.manual_seed(0)
    renderer, geo = mesh_renderer(32, init_sphere_radius=0.5)
    opt = torch.optim.Adam([geo.sdf, geo.deformation], lr=0.005)
    for _ in range(300):
        batch = make_batch(torch.rand(4) * 70 - 10, torch.rand(4) * 360, torch.full((4,), 2.5), torch.full((4,), 45.0),
                           torch.zeros(4, 3) + 3.0, 64)
        loss = ((renderer(batch).opacity - cube_mask(batch)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    batch = orbit(12, 64)
    with torch.no_grad():
        out = renderer.eval()(batch)
    assert iou(out.opacity > 0.5, cube_mask(batch) > 0.5) >= 0.95


def test_an_empty_mesh_renders_the_background():
    renderer, geo = mesh_renderer(8)
    with torch.no_grad():
        geo.sdf.fill_(1.0)
    out = renderer(orbit(2, 16))
    assert out.opacity.abs().max() == 0 and out.mesh.n_faces == 0
    assert torch.allclose(out.comp_rgb, out.comp_rgb_bg)


def test_features_shading_and_background_compose_like_the_volume_renderer():
    """Colour = material(features) inside the silhouette, background outside."""
    renderer, geo = mesh_renderer(16, init_sphere_radius=0.5)
    with torch.no_grad():
        out = renderer.eval()(orbit(1, 32))
    inside = out.opacity[..., 0] > 0.999
    outside = out.opacity[..., 0] == 0
    assert torch.allclose(out.comp_rgb[inside], torch.full((int(inside.sum()), 3), geo.cfg.geometry_only_albedo))
    assert out.comp_rgb[outside].abs().max() == 0


def test_renderer_refuses_a_density_field():
    with pytest.raises(Exception, match="mesh geometry"):
        MeshRasterizeRenderer(MeshRasterizeRenderer.Config(), OpaqueSphere(OpaqueSphere.Config()), NoMaterial(None), background())
