"""How a camera-conditioned text prior is told the camera (``bundled:text-camera``).

Such a prior's UNet takes, beside the noisy image, the camera as a ray map: for every pixel the
Plücker coordinates of its ray in world space, the unit direction ``d`` and the moment
``o × d`` (``o`` the camera centre). The map is aligned with the image, so a convolution reads
from each pixel which line of the world it sees; a global camera code (sin/cos of the azimuth
added to the timestep embedding) had to learn that mapping through the whole network and, in
3,500 fine-tuning steps, never did (README, "The Magic3D benchmark").

The prompt keeps its view suffix, so the same prompt processor serves both kinds of prior;
guidance asks :func:`is_camera_conditioned` which kind it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from lift3d.data.camera_math import look_at, rays_from_cameras, spherical_to_position

RAYMAP_CHANNELS = 6
"""Channels of :func:`camera_raymap`: ray direction (3) and moment (3)."""
MARKER_KEY = "lift3d_camera_input"
"""Key in a prior's ``model_index.json`` naming its camera input; its value is ``"raymap"``."""
BACKGROUND_KEY = "lift3d_background"
"""Key in a prior's ``model_index.json`` holding the one background colour (RGB in [0, 1]) all its
training images had; absent for a prior trained on random backgrounds."""


def camera_raymap(c2w: Float[Tensor, "B 4 4"], fovy_deg: Float[Tensor, "B"], resolution: int) -> Float[Tensor, "B 6 R R"]:
    """Plücker ray map of cameras (OpenGL camera-to-world matrices, vertical field of view in degrees)
    at ``resolution`` × ``resolution``: channels are the world-space unit ray direction ``d`` and the
    moment ``o × d``. Pixel (i, j) is the ray through the centre of the image's pixel (i, j), as the
    renderers cast it, so the map of a render resized to ``resolution`` lines up with it."""
    origins, dirs = rays_from_cameras(c2w.float(), resolution, resolution, fovy_deg.float())
    moment = torch.cross(origins, dirs, dim=-1)
    return torch.cat([dirs, moment], dim=-1).permute(0, 3, 1, 2).contiguous()


def spherical_raymap(
    elevation_deg: Float[Tensor, "B"], azimuth_deg: Float[Tensor, "B"], distance: Float[Tensor, "B"],
    fovy_deg: Float[Tensor, "B"], resolution: int,
) -> Float[Tensor, "B 6 R R"]:
    """:func:`camera_raymap` of upright cameras on a sphere looking at the origin (the bundled world's cameras)."""
    return camera_raymap(look_at(spherical_to_position(elevation_deg, azimuth_deg, distance)), fovy_deg, resolution)


def _model_index(prior_path: Path) -> dict:
    """A diffusers-layout prior's ``model_index.json`` ({} without one)."""
    index = Path(prior_path) / "model_index.json"
    return json.loads(index.read_text()) if index.is_file() else {}


def training_background(prior_path: Path) -> tuple[float, float, float] | None:
    """The one background colour a prior was trained on (its ``model_index.json``), or None."""
    colour = _model_index(prior_path).get(BACKGROUND_KEY)
    return None if colour is None else tuple(float(c) for c in colour)


def is_camera_conditioned(prior_path: Path) -> bool:
    """Whether the prior at ``prior_path`` (diffusers layout) takes a ray map (its ``model_index.json`` says so)."""
    return _model_index(prior_path).get(MARKER_KEY) == "raymap"
