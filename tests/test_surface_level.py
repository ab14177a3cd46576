"""The export's surface level: the rule against brute force, and on a field with haze around its object."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lift3d.data.random_camera import make_batch
from lift3d.export.surface_level import best_level, ray_max_density
from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput


def test_best_level_is_the_brute_force_optimum():
    torch.manual_seed(0)
    values = torch.rand(400) ** 3 * 10
    target = (values + torch.randn(400) * 0.8) > 2.0
    level, iou = best_level(values, target)
    candidates = torch.cat([values, values * 0.999, values * 1.001])
    brute = max(float(((values > c) & target).sum() / ((values > c) | target).sum()) for c in candidates)
    assert iou == pytest.approx(brute)
    covered = values > level
    assert float((covered & target).sum() / (covered | target).sum()) == pytest.approx(iou)


def test_ray_max_density_matches_dense_sampling_of_the_grid():
    torch.manual_seed(1)
    r = 16
    lo, hi = torch.tensor([-1.0, -0.5, -0.8]), torch.tensor([0.6, 0.9, 1.0])
    # a smooth field, as densities of trained fields are at the export grid's scale: a few blobs
    t = (torch.arange(r) + 0.5) / r
    cells = torch.stack(torch.meshgrid(*[lo[i] + t * (hi[i] - lo[i]) for i in range(3)], indexing="ij"), -1)
    centres, widths = torch.rand(5, 3) * (hi - lo) + lo, torch.rand(5) * 0.2 + 0.15
    grid = sum(5 * torch.exp(-((cells - c) ** 2).sum(-1) / (2 * w**2)) for c, w in zip(centres, widths))
    rays_o = torch.tensor([[3.0, 0.2, 0.1], [0.0, 3.0, 0.3], [-0.1, 0.1, 3.0], [5.0, 5.0, 5.0]])
    rays_d = torch.nn.functional.normalize(torch.tensor([[-1.0, 0.05, 0.02], [0.03, -1.0, 0.0], [0.0, 0.02, -1.0], [1.0, 0.0, 0.0]]), dim=-1)
    got = ray_max_density(grid, lo, hi, rays_o, rays_d)
    assert got[3] == 0  # a ray that misses the box

    # reference: trilinear interpolation between cell centres, written out, sampled very densely
    def trilinear(p):
        u = ((p - lo) / (hi - lo) * r - 0.5).clamp(0, r - 1)
        i0 = u.floor().long().clamp(max=r - 2)
        f = u - i0
        out = 0
        for c in range(8):
            o = torch.tensor([(c >> d) & 1 for d in range(3)])
            w = torch.prod(torch.where(o.bool(), f, 1 - f), dim=-1)
            idx = i0 + o
            out = out + w * grid[idx[:, 0], idx[:, 1], idx[:, 2]]
        return out

    for k in range(3):
        t = torch.linspace(0, 10, 20001)[:, None]
        p = rays_o[k] + t * rays_d[k]
        inside = ((p >= lo) & (p <= hi)).all(-1)
        ref = trilinear(p[inside]).max()
        assert float(got[k]) == pytest.approx(float(ref), rel=0.02)


class HazyCube(BaseImplicitGeometry):
    """A dense cube (half-size 0.35) inside a ball of thin haze (radius 0.9), as trained NeRFs have.

    Seen through the whole ball the haze reaches opacity 0.24: below the renders' 0.5, yet it
    fills most of the box, so a threshold from the density values alone closes around it."""

    @dataclass
    class Config:
        cube_density: float = 60.0
        haze_density: float = 0.15
        half: float = 0.35

    def __init__(self, cfg):
        super().__init__(cfg)
        self.radius = 1.0
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward_density(self, points):
        c = self.cfg
        soft_cube = torch.sigmoid((c.half - points.abs().amax(-1)) * 80) * c.cube_density
        haze = torch.sigmoid((0.9 - points.norm(dim=-1)) * 40) * c.haze_density
        return soft_cube + haze + 0 * self.dummy

    def forward(self, points, with_normal=False):
        feats = torch.tensor([0.2, 0.8, 0.2]).expand(points.shape[0], 3)
        return GeometryOutput(self.forward_density(points), feats, None)


def _orbit(n=12, res=48):
    cams = []
    for i in range(n):
        one = torch.ones(1)
        az, el = -180 + 360 * i / n, 15.0 + 20 * (i % 3)
        cams.append(make_batch(one * el, one * az, one * 2.5, one * 45.0, torch.tensor([[3.0, 0.0, 2.0]]), res, index=torch.tensor([i])))
    return cams


def _system(geometry):
    from lift3d.backgrounds.solid_color import SolidColorBackground
    from lift3d.materials.no_material import NoMaterial
    from lift3d.renderers.volume import NeRFVolumeRenderer

    class Tiny(torch.nn.Module):
        true_global_step = 0

    s = Tiny()
    s.geometry, s.material = geometry, NoMaterial(None)
    bg = SolidColorBackground(SolidColorBackground.Config(color=(1.0, 1.0, 1.0)))
    s.renderer = NeRFVolumeRenderer(NeRFVolumeRenderer.Config(num_samples_per_ray=256, estimator="none"), geometry, s.material, bg).eval()
    return s


def test_haze_around_an_object_exports_the_object():
    from lift3d.experiment import ExportConfig
    from lift3d.export.mesh_export import textured_mesh
    from lift3d.export.mesh_render import render_textured_mesh

    hazy = _system(HazyCube(HazyCube.Config()))
    truth = _system(HazyCube(HazyCube.Config(haze_density=0.0)))  # the object alone
    cameras = _orbit(res=96)
    with torch.no_grad():
        nerf = [hazy.renderer(b).opacity[0, ..., 0] for b in cameras]
        true_masks = [truth.renderer(b).opacity[0, ..., 0] > 0.5 for b in cameras]
    # the haze is thin to the eye: the NeRF's silhouettes are the cube's
    iou_nerf = np.mean([float(((n > 0.5) & t).sum() / ((n > 0.5) | t).sum()) for n, t in zip(nerf, true_masks)])
    assert iou_nerf > 0.95
    cfg = ExportConfig(texture_size=64)  # default resolution, smoothing and decimation
    result = textured_mesh(hazy, cfg, cameras=cameras)
    assert result.surface.rule == "silhouettes"
    # the haze level is well below the chosen level, the cube's density well above it
    assert 3 * HazyCube.Config.haze_density < result.surface.level < HazyCube.Config.cube_density / 3
    ious = []
    for b, t in zip(cameras, true_masks):
        _, mask = render_textured_mesh(result.mesh.vertices, result.mesh.faces, result.uvs, result.texture, b)
        ious.append(float((mask[0] & t).sum() / (mask[0] | t).sum()))
    assert min(ious) >= 0.95, ious
    # Otsu's rule on the same field closes the surface around the haze
    otsu = textured_mesh(hazy, ExportConfig(resolution=64, texture_size=64, max_faces=4000, threshold_rule="otsu"), cameras=cameras)
    _, mask = render_textured_mesh(otsu.mesh.vertices, otsu.mesh.faces, otsu.uvs, otsu.texture, cameras[0])
    assert float((mask[0] & true_masks[0]).sum() / (mask[0] | true_masks[0]).sum()) < 0.6


def test_export_reports_its_level_and_silhouette_iou_and_warns_when_poor(tmp_path, capsys):
    import json

    from lift3d.experiment import ExportConfig
    from lift3d.export.mesh_export import export_system

    hazy = _system(HazyCube(HazyCube.Config()))
    hazy.eval = lambda: hazy
    cameras = _orbit(n=6, res=32)
    cfg = ExportConfig(resolution=48, texture_size=64, max_faces=3000, formats=["glb"])
    export_system(hazy, tmp_path / "save", cfg, cameras=cameras, fps=5)
    report = json.loads((tmp_path / "save" / "it0-export" / "export.json").read_text())
    assert report["surface"]["rule"] == "silhouettes" and report["silhouette_iou_vs_nerf"]["views"] == 6
    assert report["silhouette_iou_vs_nerf"]["mean"] > 0.9
    out = capsys.readouterr().out
    assert f"surface: density level {report['surface']['level']:.4g}" in out and "warning" not in out
    # a level inside the haze gives a bloated export: reported, and warned about in one line
    export_system(hazy, tmp_path / "bad", ExportConfig(resolution=48, texture_size=64, max_faces=3000, formats=["glb"], threshold=0.1),
                  cameras=cameras, fps=5)
    bad = json.loads((tmp_path / "bad" / "it0-export" / "export.json").read_text())
    assert bad["surface"] == {"level": 0.1, "silhouette_iou": bad["surface"]["silhouette_iou"], "rule": "user"}
    assert bad["silhouette_iou_vs_nerf"]["mean"] < 0.6
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "export.threshold" in warnings[0]
