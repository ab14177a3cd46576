"""Input images of world objects for image-to-3D, with their true camera and identity.

Each example is a PNG (the object on a plain background, as a user's input) and a JSON sidecar
with what the benchmark needs to score a result against the truth: the object (colour, kind,
held out or not), the camera, the light and the background colour.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lift3d.data.camera_math import spherical_to_position
from lift3d.priors.world.catalog import HELD_OUT, caption
from lift3d.priors.world.render import WorldView, render_objects
from lift3d.utils.io import atomic_write_text, write_png

REFERENCE_CAMERA = {"elevation_deg": 15.0, "azimuth_deg": 0.0, "camera_distance": 2.5, "fovy_deg": 45.0}
"""The examples' camera: in the bundled world's distribution, facing the object's front (azimuth 0)."""
BACKGROUND = (0.85, 0.85, 0.85)
"""A light grey that differs from every world colour by more than the keying threshold."""
TRAINING_EXAMPLES = (("red", "house"), ("orange", "snowman"), ("pink", "mug"), ("green", "cylinder"))
"""Training (colour, kind) pairs the benchmark also runs, beside the held-out ones."""


@dataclass(frozen=True)
class ExampleTruth:
    """The sidecar of an example image."""

    colour: str
    kind: str
    caption: str
    held_out: bool
    elevation_deg: float
    azimuth_deg: float
    camera_distance: float
    fovy_deg: float
    light_position: tuple[float, float, float]
    background: tuple[float, float, float]

    def view(self, elevation: float | None = None, azimuth: float | None = None) -> WorldView:
        """The example's light and background seen from its camera, or from another angle."""
        elev = torch.tensor([self.elevation_deg if elevation is None else elevation])
        azim = torch.tensor([self.azimuth_deg if azimuth is None else azimuth])
        return WorldView(
            elevation=elev, azimuth=azim, distance=torch.tensor([self.camera_distance]), fovy=torch.tensor([self.fovy_deg]),
            light_position=torch.tensor([self.light_position]), background=torch.tensor([self.background]),
            unlit=torch.tensor([False]),
        )


def example_truth(colour: str, kind: str) -> ExampleTruth:
    cam = REFERENCE_CAMERA
    position = spherical_to_position(torch.tensor([cam["elevation_deg"] + 30.0]), torch.tensor([cam["azimuth_deg"] + 30.0]),
                                     torch.tensor([cam["camera_distance"]]))[0]
    light = torch.nn.functional.normalize(position, dim=-1) * 2.25
    return ExampleTruth(colour=colour, kind=kind, caption=caption(colour, kind), held_out=(colour, kind) in HELD_OUT,
                        light_position=tuple(float(v) for v in light), background=BACKGROUND, **cam)


def write_example(out_dir: Path, colour: str, kind: str, resolution: int = 128) -> Path:
    """Render one example image and its sidecar; returns the PNG's path."""
    truth = example_truth(colour, kind)
    render = render_objects([kind], [colour], truth.view(), resolution=resolution)
    name = f"a_{colour}_{kind}"
    png = Path(out_dir) / f"{name}.png"
    write_png(png, (render.rgb[0].numpy() * 255).round().astype(np.uint8))
    write_depth_png(depth_path_of(png), render.depth[0].numpy())
    atomic_write_text(png.with_suffix(".json"), json.dumps(asdict(truth), indent=2))
    return png


def depth_path_of(image_path: Path) -> Path:
    """Where an example's true depth map lives: ``<name>.depth.png`` beside the image."""
    return Path(image_path).with_suffix(".depth.png")


def write_depth_png(path: Path, depth: np.ndarray) -> None:
    """Ray distance in millimetres as a 16-bit grayscale PNG (0 on the background)."""
    from PIL import Image

    from lift3d.utils.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.clip(depth * 1000, 0, 65535).round().astype(np.uint16)).save(tmp, format="PNG")


def read_truth(image_path: Path) -> ExampleTruth | None:
    """The sidecar of an example image, or None for an image without one."""
    sidecar = Path(image_path).with_suffix(".json")
    if not sidecar.is_file():
        return None
    data = json.loads(sidecar.read_text())
    data["light_position"], data["background"] = tuple(data["light_position"]), tuple(data["background"])
    return ExampleTruth(**data)


def benchmark_examples() -> list[tuple[str, str]]:
    """The held-out pairs, then the training examples."""
    return list(HELD_OUT) + list(TRAINING_EXAMPLES)
