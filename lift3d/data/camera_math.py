"""Camera conventions shared by the camera sampler, the renderers and the bundled world.

World frame: z is up. A camera at elevation ``e`` and azimuth ``a`` (degrees) and distance
``d`` sits at ``d * (cos e cos a, cos e sin a, sin e)`` and looks at the origin. Azimuth 0
is the *front* of an object (the +x side). Camera frames are OpenGL style: the camera looks
down its local -z axis, +y is up and +x is right.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor


def spherical_to_position(
    elevation_deg: Float[Tensor, "B"], azimuth_deg: Float[Tensor, "B"], distance: Float[Tensor, "B"]
) -> Float[Tensor, "B 3"]:
    """Camera centres for the given elevation, azimuth (degrees) and distance."""
    e = torch.deg2rad(elevation_deg)
    a = torch.deg2rad(azimuth_deg)
    return torch.stack(
        [distance * torch.cos(e) * torch.cos(a), distance * torch.cos(e) * torch.sin(a), distance * torch.sin(e)],
        dim=-1,
    )


def look_at(
    position: Float[Tensor, "B 3"],
    up: tuple[float, float, float] | Float[Tensor, "B 3"] = (0.0, 0.0, 1.0),
    center: Float[Tensor, "B 3"] | None = None,
) -> Float[Tensor, "B 4 4"]:
    """Camera-to-world matrices of cameras at ``position`` looking at ``center`` (default: the origin)."""
    if isinstance(up, Tensor):
        up_t = up.to(position)
    else:
        up_t = torch.tensor(up, dtype=position.dtype, device=position.device).expand_as(position)
    target = torch.zeros_like(position) if center is None else center.to(position)
    forward = torch.nn.functional.normalize(target - position, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up_t, dim=-1), dim=-1)
    # cameras straight above or below: any right vector perpendicular to forward will do
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        right[degenerate] = torch.tensor([0.0, 1.0, 0.0], dtype=position.dtype, device=position.device)
    cam_up = torch.cross(right, forward, dim=-1)
    c2w = torch.zeros(position.shape[0], 4, 4, dtype=position.dtype, device=position.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = cam_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = position
    c2w[:, 3, 3] = 1.0
    return c2w


def ray_directions(height: int, width: int, fovy_deg: Float[Tensor, "B"]) -> Float[Tensor, "B H W 3"]:
    """Unnormalised camera-space directions through pixel centres for a pinhole camera."""
    focal = 0.5 * height / torch.tan(0.5 * torch.deg2rad(fovy_deg))
    j, i = torch.meshgrid(
        torch.arange(height, dtype=fovy_deg.dtype, device=fovy_deg.device) + 0.5,
        torch.arange(width, dtype=fovy_deg.dtype, device=fovy_deg.device) + 0.5,
        indexing="ij",
    )
    f = focal[:, None, None]
    x = (i[None] - 0.5 * width) / f
    y = -(j[None] - 0.5 * height) / f
    z = -torch.ones_like(x)
    return torch.stack([x, y, z], dim=-1)


def rays_from_cameras(
    c2w: Float[Tensor, "B 4 4"], height: int, width: int, fovy_deg: Float[Tensor, "B"]
) -> tuple[Float[Tensor, "B H W 3"], Float[Tensor, "B H W 3"]]:
    """World-space ray origins and unit directions for every pixel."""
    dirs_cam = ray_directions(height, width, fovy_deg)
    dirs = torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], dirs_cam)
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs


def projection_matrix(fovy_deg: Float[Tensor, "B"], aspect: float = 1.0, near: float = 0.01, far: float = 100.0) -> Float[Tensor, "B 4 4"]:
    """OpenGL perspective projection matrices."""
    f = 1.0 / torch.tan(0.5 * torch.deg2rad(fovy_deg))
    proj = torch.zeros(fovy_deg.shape[0], 4, 4, dtype=fovy_deg.dtype, device=fovy_deg.device)
    proj[:, 0, 0] = f / aspect
    proj[:, 1, 1] = f
    proj[:, 2, 2] = -(far + near) / (far - near)
    proj[:, 2, 3] = -2.0 * far * near / (far - near)
    proj[:, 3, 2] = -1.0
    return proj


def sample_point_lights(
    camera_position: Float[Tensor, "B 3"],
    distance_range: tuple[float, float],
    position_perturb: float,
    generator: torch.Generator | None = None,
) -> Float[Tensor, "B 3"]:
    """DreamFusion light sampling: near the camera direction, perturbed, at a random distance."""
    b = camera_position.shape[0]
    noise = torch.randn(b, 3, generator=generator, dtype=camera_position.dtype) * position_perturb
    direction = torch.nn.functional.normalize(camera_position + noise.to(camera_position.device), dim=-1)
    u = torch.rand(b, generator=generator, dtype=camera_position.dtype).to(camera_position.device)
    dist = distance_range[0] + u * (distance_range[1] - distance_range[0])
    return direction * dist[:, None]


def uniform(b: int, lo: float, hi: float, generator: torch.Generator | None = None) -> Tensor:
    """``b`` samples uniformly in ``[lo, hi]``."""
    return lo + torch.rand(b, generator=generator) * (hi - lo)


def stratified_uniform(b: int, lo: float, hi: float, generator: torch.Generator | None = None) -> Tensor:
    """``b`` samples, one uniform in each of ``b`` equal slices of ``[lo, hi]`` (in slice order)."""
    return lo + (torch.rand(b, generator=generator) + torch.arange(b)) / b * (hi - lo)


def sample_elevation(b: int, lo: float, hi: float, generator: torch.Generator | None = None) -> Tensor:
    """Elevations (degrees) uniform on the sphere's band between ``lo`` and ``hi``.

    Sampling ``sin(e)`` uniformly gives each area of the viewing sphere equal weight,
    so overhead views are not over-represented.
    """
    s_lo, s_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))
    s = s_lo + torch.rand(b, generator=generator) * (s_hi - s_lo)
    return torch.rad2deg(torch.asin(s))
