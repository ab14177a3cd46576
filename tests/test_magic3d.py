"""Magic3D: NeRF-to-DMTet conversion, the coarse and refine presets end to end, their config errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest
import torch
import trimesh

from lift3d.backgrounds.solid_color import SolidColorBackground
from lift3d.data.random_camera import RandomCameraConfig, RandomCameraDataModule
from lift3d.encodings.mlp import MLPConfig
from lift3d.errors import RunError
from lift3d.geometry import convert
from lift3d.geometry.base import BaseImplicitGeometry, GeometryOutput
from lift3d.geometry.tetrahedra_sdf_grid import TetrahedraSDFGrid
from lift3d.materials.no_material import NoMaterial
from lift3d.renderers.volume import NeRFVolumeRenderer
from run_helpers import ROOT, SMALL, assert_valid_gltf, launch, trial_dirs


class HazyBall(BaseImplicitGeometry):
    """A dense ball of radius ``r`` in a faint haze reaching ``haze``: the surface is the ball."""

    @dataclass
    class Config:
        r: float = 0.45
        haze: float = 0.8

    def __init__(self, cfg):
        super().__init__(cfg)
        self.encoding = torch.nn.Linear(3, 4)
        self.feature_network = torch.nn.Linear(4, 3)

    def forward_density(self, points):
        d = points.norm(dim=-1)
        return torch.where(d < self.cfg.r, 200.0, torch.where(d < self.cfg.haze, 0.3, 0.0))

    def forward(self, points, with_normal=False):
        return GeometryOutput(self.forward_density(points), torch.full((points.shape[0], 3), 0.5), None)


def coarse_run(geometry) -> convert.CoarseRun:
    renderer = NeRFVolumeRenderer(NeRFVolumeRenderer.Config(num_samples_per_ray=128, estimator="none", randomized=False),
                                  geometry, NoMaterial(None), SolidColorBackground(SolidColorBackground.Config())).eval()
    data = RandomCameraDataModule(RandomCameraConfig(eval_resolution=32, n_test_views=8, eval_camera_distance=2.5))
    return convert.CoarseRun(geometry, renderer, [data.test_dataset[i] for i in range(8)])


def tet_grid(**kw) -> TetrahedraSDFGrid:
    return TetrahedraSDFGrid(TetrahedraSDFGrid.Config(isosurface_resolution=24, geometry_only=True, **kw))


def test_conversion_of_a_known_density_leaves_the_haze_out(monkeypatch):
    monkeypatch.setattr(convert, "load_coarse_run", lambda source: coarse_run(HazyBall(HazyBall.Config())))
    target = tet_grid()
    report = convert.convert_to_mesh_geometry(target, "coarse-trial", inherit_texture=False)
    mesh = target.isosurface()
    radius = mesh.v_pos.norm(dim=-1)
    cell = target.cell_size
    assert (radius - 0.45).abs().max() < cell  # the ball, not the haze at 0.8
    assert report.silhouette_iou > 0.95 and 0.3 < report.level < 200
    assert (target.deformation == 0).all() and report.faces == mesh.n_faces


def test_conversion_copies_the_colour_field(monkeypatch):
    cfg = TetrahedraSDFGrid.Config(isosurface_resolution=16)
    source = TetrahedraSDFGrid(cfg)  # a geometry with the same colour-field layout
    coarse = HazyBall(HazyBall.Config())
    coarse.encoding, coarse.feature_network = source.encoding, source.feature_network
    with torch.no_grad():
        for p in coarse.feature_network.parameters():
            p.normal_()
    monkeypatch.setattr(convert, "load_coarse_run", lambda s: coarse_run(coarse))
    target = TetrahedraSDFGrid(cfg)
    pts = torch.rand(50, 3) - 0.5
    assert not torch.allclose(target.features_at(pts), source.features_at(pts))
    convert.convert_to_mesh_geometry(target, "coarse-trial")
    assert torch.allclose(target.features_at(pts), source.features_at(pts))
    # a colour field of another layout is a clear error naming the setting
    other = TetrahedraSDFGrid(TetrahedraSDFGrid.Config(isosurface_resolution=16, feature_network=MLPConfig(n_neurons=8)))
    with pytest.raises(Exception, match="system.geometry.feature_network: differs from the coarse run"):
        convert.convert_to_mesh_geometry(other, "coarse-trial")


class SoftBall(HazyBall):
    """A ball of uniform, modest density off the centre: rays through its rim cross too little of it
    to reach opacity 0.5, so the NeRF's silhouette is smaller than the ball (radius ~0.39, not 0.45)."""

    centre = torch.tensor([0.3, 0.0, 0.25])

    def forward_density(self, points):
        return torch.where((points - self.centre).norm(dim=-1) < self.cfg.r, 1.5, 0.0)


def test_carving_by_the_nerf_silhouettes_fits_the_mesh_to_what_the_nerf_renders(monkeypatch):
    """No single level can give a soft-edged object its rendered size; carving the density by the
    silhouettes (from cameras at several elevations, an off-centre object so that a flipped image
    axis would carve the object away) can. Unseen cells are kept."""
    monkeypatch.setattr(convert, "load_coarse_run", lambda s: coarse_run(SoftBall(SoftBall.Config())))
    plain, carved = tet_grid(), tet_grid()
    level_only = convert.convert_to_mesh_geometry(plain, "coarse-trial", inherit_texture=False)
    report = convert.convert_to_mesh_geometry(carved, "coarse-trial", inherit_texture=False, carve_views=10)
    assert level_only.silhouette_iou < 0.9 and report.silhouette_iou > level_only.silhouette_iou + 0.05

    def radius(grid):
        return float((grid.isosurface().v_pos.detach() - SoftBall.centre).norm(dim=-1).mean())

    assert abs(radius(plain) - 0.45) < 0.04 and abs(radius(carved) - 0.39) < 0.04 and radius(carved) < radius(plain) - 0.03

    from lift3d.export.surface_level import silhouette_hull

    cams = convert.carving_cameras(4, 2.5, 10.0, resolution=16)  # narrow views: the box's corners are out of sight
    hull = silhouette_hull(cams, [torch.zeros(4, 16, 16)], torch.full((3,), -1.0), torch.full((3,), 1.0), 8)
    assert not hull[3:5, 3:5, 3:5].any() and hull[0, 0, 0] and hull[-1, -1, -1]


@pytest.mark.parametrize("ball, message", [(dict(r=1.3, haze=1.4), "reaches the edge"), (dict(r=0.0, haze=0.0), "no density reaches")])
def test_bad_conversions_stop_with_the_fix(monkeypatch, ball, message):
    monkeypatch.setattr(convert, "load_coarse_run", lambda s: coarse_run(HazyBall(HazyBall.Config(**ball))))
    with pytest.raises(RunError, match=message):
        convert.convert_to_mesh_geometry(tet_grid(), "coarse-trial", inherit_texture=False, level=1.0)


MESH_SMALL = [s for s in SMALL if not s.startswith("system.renderer.")] + ["system.geometry.isosurface_resolution=16"]


def test_bundled_coarse_then_refine_resumes_and_exports(tmp_path):
    out = tmp_path / "outputs"
    prompt = "system.prompt_processor.prompt=a green cube"
    proc = launch(["--config", str(ROOT / "configs" / "magic3d-coarse-bundled.yaml"), "--train", "trainer.max_steps=4", prompt,
                   f"exp_root_dir={out}", *SMALL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (coarse,) = trial_dirs(out)
    proc = launch(["--config", str(coarse / "configs" / "parsed.yaml"), "--export", f"resume={coarse}", "export.resolution=32",
                   "export.texture_size=64"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((coarse / "save" / "it4-export" / "export.json").read_text())["surface"]["rule"] == "silhouettes"

    proc = launch(["--config", str(ROOT / "configs" / "magic3d-refine-bundled.yaml"), "--train", "trainer.max_steps=4", prompt,
                   f"system.geometry_convert_from={coarse}", f"exp_root_dir={out}", *MESH_SMALL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"converted {coarse} to a mesh geometry" in proc.stdout and "texture inherited" in proc.stdout
    (refine,) = [t for t in trial_dirs(out) if t != coarse]
    state = torch.load(refine / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert {"geometry.sdf", "geometry.deformation"} <= set(state) and "geometry.grid_tets" not in state
    frames = sorted((refine / "save" / "it4-test").glob("*.png"))
    assert len(frames) == 5

    # resuming takes the mesh from the refine checkpoint: the coarse run is not read again
    shutil.move(coarse, tmp_path / "moved-away")
    parsed = str(refine / "configs" / "parsed.yaml")
    proc = launch(["--config", parsed, "--train", f"resume={refine}", "trainer.max_steps=6"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "converted" not in proc.stdout
    assert torch.load(refine / "ckpts" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 6

    proc = launch(["--config", parsed, "--export", f"resume={refine}", "export.texture_size=64"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    export = refine / "save" / "it6-export"
    report = json.loads((export / "export.json").read_text())
    assert report["surface"]["rule"] == "mesh"
    glb = trimesh.load(export / "model.glb", force="mesh")
    assert glb.visual.material.baseColorTexture is not None
    closed = glb.copy()
    closed.merge_vertices(merge_tex=True, merge_norm=True)  # UV seams split vertices; the surface is closed
    assert closed.is_watertight and closed.volume > 0
    assert report["silhouette_iou_vs_nerf"]["mean"] > 0.9  # the export is the mesh that was rendered
    assert_valid_gltf(export / "model.glb")


def test_real_prior_presets_run_on_tiny_priors(tmp_path, pixel_prior, latent_prior):
    out = tmp_path / "outputs"
    prompt = "system.prompt_processor.prompt=a red cube"
    proc = launch(["--config", str(ROOT / "configs" / "magic3d-coarse-if.yaml"), "--train", "trainer.max_steps=2", prompt,
                   f"system.guidance.pretrained_model_name_or_path={pixel_prior}", f"exp_root_dir={out}", *SMALL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (coarse,) = trial_dirs(out)
    proc = launch(["--config", str(ROOT / "configs" / "magic3d-refine-sd.yaml"), "--train", "trainer.max_steps=2", prompt,
                   f"system.guidance.pretrained_model_name_or_path={latent_prior}", f"system.geometry_convert_from={coarse}",
                   f"exp_root_dir={out}", *MESH_SMALL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (refine,) = [t for t in trial_dirs(out) if t != coarse]
    assert len(list((refine / "save" / "it2-test").glob("*.png"))) == 5


def test_refine_config_errors_stop_before_any_output(tmp_path):
    out = tmp_path / "outputs"
    base = ["--config", str(ROOT / "configs" / "magic3d-refine-bundled.yaml"), "--train", "system.prompt_processor.prompt=a cube",
            f"exp_root_dir={out}"]
    proc = launch([*base, f"system.geometry_convert_from={tmp_path / 'nowhere'}"], tmp_path)
    assert proc.returncode != 0
    assert "system.geometry_convert_from" in proc.stderr and "no such checkpoint or trial directory" in proc.stderr
    assert not out.exists()
    # mismatched geometry, renderer and stage are config errors, found when the config is parsed
    from lift3d.config import explicit_keys, load_mapping, override_keys, parse
    from lift3d.errors import ConfigError
    from lift3d.experiment import ExperimentConfig

    for change, message in (("system.renderer_type=nerf-volume-renderer", "cannot draw geometry 'tetrahedra-sdf-grid'; use mesh-rasterize-renderer"),
                            ("system.stage=coarse", "the coarse stage optimises a NeRF")):
        overrides = ["system.prompt_processor.prompt=a cube", "system.geometry_convert_from=x", change]
        with pytest.raises(ConfigError, match=message), explicit_keys(override_keys(overrides)):
            parse(ExperimentConfig, load_mapping(ROOT / "configs" / "magic3d-refine-bundled.yaml", overrides))
