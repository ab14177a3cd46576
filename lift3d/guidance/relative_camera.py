"""The relative camera a view-conditioned prior reads, in each prior family's convention.

All angles in degrees in, radians out; Δ = target − reference.

* ``lift3d`` (the bundled view prior): (Δelevation, sin Δazimuth, cos Δazimuth, Δdistance).
* ``zero123`` (Zero-1-to-3, Zero123-XL): (Δpolar, sin Δazimuth, cos Δazimuth, Δdistance), with
  polar = 90° − elevation, so Δpolar = −Δelevation.
* ``stable-zero123``: (Δpolar, sin Δazimuth, cos Δazimuth, reference polar): the last entry is
  the reference view's own polar angle, not a distance.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

CameraConvention = Literal["lift3d", "zero123", "stable-zero123"]
CONVENTIONS: tuple[str, ...] = get_args(CameraConvention)


def relative_camera_features(
    convention: str,
    ref_elevation: Float[Tensor, "B"],
    ref_azimuth: Float[Tensor, "B"],
    ref_distance: Float[Tensor, "B"],
    elevation: Float[Tensor, "B"],
    azimuth: Float[Tensor, "B"],
    distance: Float[Tensor, "B"],
) -> Float[Tensor, "B 4"]:
    """The 4 camera features of target views relative to reference views."""
    d_elev = torch.deg2rad(elevation - ref_elevation)
    d_azim = torch.deg2rad(azimuth - ref_azimuth)
    sin, cos = torch.sin(d_azim), torch.cos(d_azim)
    if convention == "lift3d":
        return torch.stack([d_elev, sin, cos, distance - ref_distance], dim=-1)
    if convention == "zero123":
        return torch.stack([-d_elev, sin, cos, distance - ref_distance], dim=-1)
    if convention == "stable-zero123":
        return torch.stack([-d_elev, sin, cos, torch.deg2rad(90.0 - ref_elevation)], dim=-1)
    raise ValueError(f"unknown camera convention {convention!r}; one of {', '.join(CONVENTIONS)}")
