"""``prolificdreamer-system``: ProlificDreamer's three stages (Wang et al., 2023).

* ``stage: coarse``: a hash-grid NeRF scored by VSD (``vsd-guidance``) on its renders;
* ``stage: geometry``: the NeRF converted to DMTet (``geometry_convert_from``), its geometry refined
  by SDS, on normal maps (``guidance_input: normal``, the paper's choice for Stable Diffusion) or on
  the shaded renders (``rgb``);
* ``stage: texture``: the geometry stage's mesh copied and fixed (``geometry.fix_geometry: true``),
  its colour field trained by VSD.

It is Magic3D's system with three stages instead of two: conversion, resuming and the mesh
regularisers are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from lift3d.registry import register
from lift3d.renderers.base import RenderOutput
from lift3d.systems.magic3d import Magic3DSystem


def normal_image(out: RenderOutput) -> torch.Tensor:
    """Normals as colours, (n + 1) / 2 where the surface is and black elsewhere (threestudio's normal
    renders); exact for a volume render's opacity-weighted normals too."""
    return ((out.comp_normal + out.opacity) / 2).clamp(0, 1)


@register("prolificdreamer-system")
class ProlificDreamerSystem(Magic3DSystem):
    """NeRF (VSD), then DMTet geometry (SDS), then texture on the fixed mesh (VSD)."""

    mesh_stages = ("geometry", "texture")

    @dataclass
    class Config(Magic3DSystem.Config):
        stage: Literal["coarse", "geometry", "texture"] = "coarse"
        """``coarse``: a NeRF; ``geometry``: a DMTet mesh's shape; ``texture``: the colour field on a fixed mesh."""
        guidance_input: Literal["rgb", "normal"] = "rgb"
        """What the guidance scores: the shaded renders, or the normal maps (the geometry stage with Stable Diffusion)."""

    @classmethod
    def config_errors(cls, cfg, path: str) -> list[str]:
        errors = super().config_errors(cfg, path)
        if cfg.guidance_input == "normal" and getattr(cfg.geometry, "normal_type", None) == "none":
            errors.append(f"{path}.guidance_input: normal, but geometry.normal_type is none; "
                          f"set {path}.geometry.normal_type to analytic or finite_difference")
        if cfg.stage == "texture" and not getattr(cfg.geometry, "fix_geometry", True):
            errors.append(f"{path}.geometry.fix_geometry: the texture stage keeps the geometry stage's mesh; set it to true "
                          f"(or use {path}.stage=geometry to change the shape)")
        return errors

    def needs_normal(self) -> bool:
        return super().needs_normal() or self.cfg.guidance_input == "normal"

    def guidance_input(self, out: RenderOutput) -> torch.Tensor:
        if self.cfg.guidance_input == "normal":
            return normal_image(out)
        return out.comp_rgb
