"""View-dependent prompting: which suffix a camera gets.

Used by the prompt processors and by the bundled world when it captions its training
images, so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

VIEW_NAMES = ("front", "side", "back", "overhead")
"""Order of view buckets; index ``i`` in :func:`view_index` is ``VIEW_NAMES[i]``."""

VIEW_SUFFIXES = {name: f", {name} view" for name in VIEW_NAMES}
"""Suffix appended to the prompt for each view bucket."""


@dataclass(frozen=True)
class ViewThresholds:
    """Thresholds (degrees) that split cameras into view buckets."""

    front: float = 45.0
    """|azimuth| below this is a front view."""
    back: float = 45.0
    """|azimuth| above 180 minus this is a back view."""
    overhead: float = 60.0
    """Elevation above this is an overhead view, whatever the azimuth."""


def wrap_azimuth(azimuth_deg: Tensor) -> Tensor:
    """Azimuth wrapped to [-180, 180)."""
    return torch.remainder(azimuth_deg + 180.0, 360.0) - 180.0


def view_index(elevation_deg: Tensor, azimuth_deg: Tensor, thresholds: ViewThresholds = ViewThresholds()) -> Tensor:
    """Index into :data:`VIEW_NAMES` for each camera."""
    az = wrap_azimuth(azimuth_deg).abs()
    idx = torch.ones_like(az, dtype=torch.long)  # side
    idx = torch.where(az < thresholds.front, torch.zeros_like(idx), idx)
    idx = torch.where(az > 180.0 - thresholds.back, torch.full_like(idx, 2), idx)
    idx = torch.where(elevation_deg > thresholds.overhead, torch.full_like(idx, 3), idx)
    return idx
