"""The bundled preset renders what the bundled priors were trained on."""

from pathlib import Path

from lift3d.config import load_mapping, parse
from lift3d.experiment import ExperimentConfig
from lift3d.priors.world import conventions as conv

ROOT = Path(__file__).parents[1]


def test_bundled_preset_matches_world_conventions():
    cfg = parse(ExperimentConfig, load_mapping(ROOT / "configs/dreamfusion-bundled.yaml", ["system.prompt_processor.prompt=a red house"]))
    d = cfg.data
    assert d.resolution == conv.RESOLUTION
    assert d.elevation_range == conv.ELEVATION_RANGE and d.elevation_sphere_prob == conv.ELEVATION_SPHERE_PROB
    assert (d.camera_perturb, d.center_perturb, d.up_perturb) == (conv.CAMERA_PERTURB, conv.CENTER_PERTURB, conv.UP_PERTURB)
    assert d.azimuth_range == conv.AZIMUTH_RANGE
    assert d.camera_distance_range == conv.DISTANCE_RANGE
    assert d.fovy_range == conv.FOVY_RANGE
    assert d.light_distance_range == conv.LIGHT_DISTANCE_RANGE
    assert d.light_position_perturb == conv.LIGHT_POSITION_PERTURB
    m = cfg.system.material
    assert m.ambient_light_color == (conv.AMBIENT,) * 3 and m.diffuse_light_color == (conv.DIFFUSE,) * 3
    assert m.albedo_prob == conv.UNLIT_FRACTION and m.textureless_prob == 0.0
    assert cfg.system.geometry.radius == conv.SCENE_RADIUS
    assert cfg.system.background_type == "solid-color" and cfg.system.background.random_aug
    assert cfg.system.guidance.pretrained_model_name_or_path == "bundled:text"


def test_world_renders_through_the_same_camera_code():
    """A sphere traced by the world renderer and the same sphere volume-rendered agree on the silhouette."""
    import torch

    from lift3d.priors.world.render import WorldView, render_objects

    n = 3
    view = WorldView(torch.full((n,), 20.0), torch.tensor([0.0, 90.0, 200.0]), torch.full((n,), 2.5), torch.full((n,), 45.0),
                     torch.tensor([[3.0, 0.0, 2.0]]).repeat(n, 1), torch.zeros(n, 3), torch.zeros(n, dtype=torch.bool))
    out = render_objects(["sphere"] * n, ["red"] * n, view, resolution=32)
    # closed form: a sphere of radius 0.55 at distance 2.5 with fovy 45 covers a disc of this pixel radius
    import math

    half = math.asin(0.55 / 2.5)
    radius_px = math.tan(half) / math.tan(math.radians(22.5)) * 16
    expected_area = math.pi * radius_px**2
    for i in range(n):
        assert abs(out.mask[i].sum().item() - expected_area) < 0.08 * expected_area
    # lit side: the light is at +x, so the front view is brighter than the back view
    assert out.rgb[0][out.mask[0]].mean() > out.rgb[2][out.mask[2]].mean()
