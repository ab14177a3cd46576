"""Batched sphere tracer of the procedural world, with the same cameras and shading as lift3d.

Shading matches ``diffuse-with-point-light``: ``albedo * (ambient + diffuse * max(0, n.l))``
with ``l`` towards a point light; background is a solid colour per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lift3d.data.camera_math import look_at, rays_from_cameras, spherical_to_position
from lift3d.priors.world import conventions as conv
from lift3d.priors.world.catalog import ACCENT_ALBEDO, COLOURS
from lift3d.priors.world.shapes import object_sdf


@dataclass
class WorldView:
    """Cameras and lighting of a batch of world renders (degrees, world units)."""

    elevation: Float[Tensor, "B"]
    azimuth: Float[Tensor, "B"]
    distance: Float[Tensor, "B"]
    fovy: Float[Tensor, "B"]
    light_position: Float[Tensor, "B 3"]
    background: Float[Tensor, "B 3"]
    unlit: Bool[Tensor, "B"]


@dataclass
class WorldRender:
    """Images, masks and depths of a batch of world renders."""

    rgb: Float[Tensor, "B H W 3"]
    mask: Bool[Tensor, "B H W"]
    depth: Float[Tensor, "B H W"]


def trace(kind: str, origins: Tensor, dirs: Tensor, steps: int = 64) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sphere-trace rays (N, 3) against one object: hit mask, depth, normal, accent mask."""
    # start where the ray enters the scene's bounding sphere
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - (conv.SCENE_RADIUS * 1.05) ** 2
    disc = (b * b - c).clamp(min=0)
    t = (-b - disc.sqrt()).clamp(min=0)
    t_far = -b + disc.sqrt()
    alive = (b * b - c) > 0
    for _ in range(steps):
        p = origins + t[:, None] * dirs
        d, _ = object_sdf(kind, p)
        t = torch.where(alive, t + 0.9 * d, t)
        alive = alive & (d > 1e-4) & (t < t_far)
    p = origins + t[:, None] * dirs
    d, accent = object_sdf(kind, p)
    hit = (d.abs() < 5e-3) & (t < t_far)
    eps = 1e-3
    offsets = torch.eye(3, dtype=p.dtype, device=p.device) * eps
    grad = torch.stack(
        [object_sdf(kind, p + offsets[i])[0] - object_sdf(kind, p - offsets[i])[0] for i in range(3)], dim=-1
    )
    normal = torch.nn.functional.normalize(grad, dim=-1)
    return hit, t, normal, accent


def render_objects(
    kinds: list[str], colours: list[str], view: WorldView, resolution: int = conv.RESOLUTION
) -> WorldRender:
    """Render object ``kinds[i]`` in colour ``colours[i]`` under ``view`` (batch index i)."""
    bsz = len(kinds)
    pos = spherical_to_position(view.elevation, view.azimuth, view.distance)
    c2w = look_at(pos)
    origins, dirs = rays_from_cameras(c2w, resolution, resolution, view.fovy)
    rgb = view.background[:, None, None, :].expand(bsz, resolution, resolution, 3).clone()
    mask = torch.zeros(bsz, resolution, resolution, dtype=torch.bool)
    depth = torch.zeros(bsz, resolution, resolution)
    for kind in sorted(set(kinds)):
        idx = torch.tensor([i for i, k in enumerate(kinds) if k == kind])
        o = origins[idx].reshape(-1, 3)
        d = dirs[idx].reshape(-1, 3)
        hit, t, normal, accent = trace(kind, o, d)
        albedo = torch.tensor([COLOURS[colours[i]] for i in idx.tolist()])
        albedo = albedo[:, None, :].expand(-1, resolution * resolution, 3).reshape(-1, 3)
        albedo = torch.where(accent[:, None], torch.tensor(ACCENT_ALBEDO), albedo)
        p = o + t[:, None] * d
        light = view.light_position[idx][:, None, :].expand(-1, resolution * resolution, 3).reshape(-1, 3)
        ldir = torch.nn.functional.normalize(light - p, dim=-1)
        lambert = (normal * ldir).sum(-1).clamp(min=0)
        unlit = view.unlit[idx][:, None].expand(-1, resolution * resolution).reshape(-1)
        shade = torch.where(unlit, torch.ones_like(lambert), conv.AMBIENT + conv.DIFFUSE * lambert)
        colour = (albedo * shade[:, None]).clamp(0, 1)
        hit_img = hit.reshape(len(idx), resolution, resolution)
        rgb[idx] = torch.where(hit_img[..., None], colour.reshape(len(idx), resolution, resolution, 3), rgb[idx])
        mask[idx] = hit_img
        depth[idx] = torch.where(hit_img, t.reshape(len(idx), resolution, resolution), torch.zeros(()))
    return WorldRender(rgb=rgb, mask=mask, depth=depth)


def sample_views(bsz: int, generator: torch.Generator | None = None) -> WorldView:
    """Random cameras, lights and backgrounds from the bundled training distribution."""
    from lift3d.data.camera_math import sample_elevation, sample_point_lights, uniform

    elev = sample_elevation(bsz, *conv.ELEVATION_RANGE, generator=generator)
    azim = uniform(bsz, *conv.AZIMUTH_RANGE, generator=generator)
    dist = uniform(bsz, *conv.DISTANCE_RANGE, generator=generator)
    fovy = uniform(bsz, *conv.FOVY_RANGE, generator=generator)
    light = sample_point_lights(
        spherical_to_position(elev, azim, dist), conv.LIGHT_DISTANCE_RANGE, conv.LIGHT_POSITION_PERTURB, generator
    )
    background = torch.rand(bsz, 3, generator=generator)
    unlit = torch.rand(bsz, generator=generator) < conv.UNLIT_FRACTION
    return WorldView(elev, azim, dist, fovy, light, background, unlit)
