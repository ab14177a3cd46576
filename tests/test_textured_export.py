"""Textured export of a geometry with known shape and colour matches the NeRF's own renders."""

import json
import math
from dataclasses import dataclass

import imageio
import pytest
import torch
import trimesh

from lift3d.backgrounds.solid_color import SolidColorBackground
from lift3d.data.random_camera import make_batch
from lift3d.errors import RunError
from lift3d.experiment import ExportConfig
from lift3d.export.mesh_export import export_system, textured_mesh
from lift3d.export.mesh_render import render_textured_mesh
from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput
from lift3d.materials.no_material import NoMaterial
from lift3d.renderers.volume import NeRFVolumeRenderer
from run_helpers import assert_valid_gltf


class ColourfulSphere(BaseImplicitGeometry):
    """A dense sphere of radius 0.5 whose albedo varies smoothly with position."""

    @dataclass
    class Config:
        r: float = 0.5

    def __init__(self, cfg):
        super().__init__(cfg)
        self.radius = 1.0
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward_density(self, points):
        # a nearly hard wall (so the NeRF silhouette is the sphere): ~0 outside, 200 inside
        return 200 * torch.sigmoid((self.cfg.r - points.norm(dim=-1)) * 5000) + 0 * self.dummy

    def forward(self, points, with_normal=False):
        albedo = torch.stack([0.5 + 0.4 * torch.sin(3 * points[:, 0]), 0.5 + 0.4 * points[:, 1], 0.5 + 0.4 * torch.cos(2 * points[:, 2])], -1)
        return GeometryOutput(self.forward_density(points), albedo, None)


class FakeSystem(torch.nn.Module):
    """What export needs of a system: geometry, material, step."""

    def __init__(self):
        super().__init__()
        self.geometry = ColourfulSphere(ColourfulSphere.Config())
        self.material = NoMaterial(None)
        bg = SolidColorBackground(SolidColorBackground.Config(color=(1.0, 1.0, 1.0)))
        rcfg = NeRFVolumeRenderer.Config(num_samples_per_ray=128, estimator="none", randomized=False)
        self.renderer = NeRFVolumeRenderer(rcfg, self.geometry, self.material, bg)
        self.true_global_step = 7


def turntable(n: int = 6, res: int = 64):
    azim = torch.linspace(-180, 180, n + 1)[:-1]
    one = torch.ones(n)
    light = torch.tensor([[3.0, 0.0, 0.0]]).expand(n, 3)
    return make_batch(one * 15.0, azim, one * 2.5, one * 45.0, light, res)


def test_export_matches_the_nerf_renders_in_mask_and_colour(tmp_path):
    system = FakeSystem()
    cfg = ExportConfig(resolution=96, threshold=100.0, texture_size=512)
    result = textured_mesh(system, cfg)
    batch = turntable()
    rcfg = NeRFVolumeRenderer.Config(num_samples_per_ray=256, estimator="none", randomized=False)
    renderer = NeRFVolumeRenderer(rcfg, system.geometry, system.material,
                                  SolidColorBackground(SolidColorBackground.Config(color=(1.0, 1.0, 1.0)))).eval()
    ious, psnrs = [], []
    with torch.no_grad():
        nerf = renderer(batch)
    mesh_rgb, mesh_mask = render_textured_mesh(result.mesh.vertices, result.mesh.faces, result.uvs, result.texture, batch)
    for i in range(batch.size):
        nerf_mask = nerf.opacity[i, ..., 0] > 0.5
        inter = (nerf_mask & mesh_mask[i]).sum().item()
        ious.append(inter / (nerf_mask | mesh_mask[i]).sum().item())
        both = nerf_mask & mesh_mask[i]
        mse = ((nerf.comp_rgb[i][both] - mesh_rgb[i][both]) ** 2).mean().item()
        psnrs.append(10 * math.log10(1 / mse))
    assert min(ious) >= 0.95, ious
    assert min(psnrs) >= 25, psnrs


def test_export_writes_obj_glb_ply_that_load_back_with_their_texture(tmp_path):
    cfg = ExportConfig(resolution=48, threshold=100.0, texture_size=128, formats=["obj", "glb", "ply"], max_faces=2000)
    paths = export_system(FakeSystem(), tmp_path / "save", cfg, cameras=[turntable(3, 32), turntable(2, 32)])
    out = tmp_path / "save" / "it7-export"
    assert sorted(p.name for p in paths) == ["export.json", "it7-export.mp4", "model.glb", "model.mtl", "model.obj", "model.ply", "texture.png"]
    report = json.loads((out / "export.json").read_text())
    assert report["surface"]["rule"] == "user" and report["silhouette_iou_vs_nerf"]["views"] == 5  # every image of every batch
    assert report["silhouette_iou_vs_nerf"]["min"] > 0.9
    reader = imageio.v2.get_reader(str(tmp_path / "save" / "it7-export.mp4"))
    video = [reader.get_data(i) for i in range(reader.count_frames())]
    assert len(video) == 5 and video[0].shape == (32, 32, 3)
    assert video[0][16, 16].mean() < 250 and video[0][0, 0].min() > 250  # the sphere on white
    assert not list(out.glob("*.tmp*"))
    glb = trimesh.load(out / "model.glb", force="mesh")
    assert len(glb.faces) <= 2000
    assert glb.visual.material.baseColorTexture is not None
    assert glb.visual.uv.shape == (len(glb.vertices), 2)
    obj = trimesh.load(out / "model.obj", force="mesh")
    assert obj.visual.uv is not None and abs(obj.volume - 4 / 3 * math.pi * 0.5**3) < 0.05
    ply = trimesh.load(out / "model.ply")
    assert ply.visual.vertex_colors.shape[0] == len(ply.vertices)
    assert_valid_gltf(out / "model.glb")


def test_export_into_an_unwritable_folder_is_a_clear_error(tmp_path):
    save = tmp_path / "save"
    save.mkdir()
    (save / "it7-export").write_text("a file where the folder should be")
    with pytest.raises(RunError, match="cannot write into"):
        export_system(FakeSystem(), save, ExportConfig(resolution=32, threshold=100.0, texture_size=64))
