"""Signed distance functions of the world's objects, in canonical pose (z up, front at +x).

``object_sdf(kind, p)`` returns the signed distance and, per point, whether the nearest
surface is the object's accent feature (door, nose, handle), which is shaded darker.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sphere(p: Tensor, centre: tuple[float, float, float], r: float) -> Tensor:
    return (p - p.new_tensor(centre)).norm(dim=-1) - r


def box(p: Tensor, centre: tuple[float, float, float], half: tuple[float, float, float], rounding: float = 0.0) -> Tensor:
    q = (p - p.new_tensor(centre)).abs() - p.new_tensor(half) + rounding
    outside = q.clamp(min=0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0)
    return outside + inside - rounding


def cylinder_z(p: Tensor, centre: tuple[float, float, float], r: float, half_h: float) -> Tensor:
    q = p - p.new_tensor(centre)
    d = torch.stack([q[..., :2].norm(dim=-1) - r, q[..., 2].abs() - half_h], dim=-1)
    return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0)


def cone_z(p: Tensor, base_z: float, apex_z: float, r: float) -> Tensor:
    """Solid cone with its base disc (radius ``r``) at ``base_z`` and its apex at ``apex_z``."""
    h = apex_z - base_z
    q = torch.stack([p[..., :2].norm(dim=-1), p[..., 2] - base_z], dim=-1)
    # distance to the 2D triangle (0,0)-(r,0)-(0,h) in the (radial, height) half-plane
    a = q.new_tensor([r, 0.0])
    b = q.new_tensor([0.0, h])
    ab = b - a
    t = (((q - a) * ab).sum(-1) / (ab * ab).sum()).clamp(0, 1)
    d_side = (q - (a + t[..., None] * ab)).norm(dim=-1)
    d_base = torch.where(q[..., 0] <= r, q[..., 1].abs(), (q - a).norm(dim=-1))
    dist = torch.minimum(d_side, d_base)
    inside = (q[..., 1] >= 0) & (q[..., 1] <= h) & (q[..., 0] <= r * (1 - q[..., 1] / h))
    return torch.where(inside, -dist, dist)


def cone_x(p: Tensor, base_x: float, apex_x: float, r: float, centre_yz: tuple[float, float]) -> Tensor:
    """Cone along +x (a nose): base disc at ``base_x``, apex at ``apex_x``."""
    q = torch.stack([p[..., 1] - centre_yz[0], p[..., 2] - centre_yz[1], p[..., 0]], dim=-1)
    return cone_z(q, base_x, apex_x, r)


def torus_z(p: Tensor, major: float, minor: float, centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Tensor:
    q = p - p.new_tensor(centre)
    ring = torch.stack([q[..., :2].norm(dim=-1) - major, q[..., 2]], dim=-1)
    return ring.norm(dim=-1) - minor


def torus_xz(p: Tensor, major: float, minor: float, centre: tuple[float, float, float]) -> Tensor:
    """Torus whose ring lies in the x-z plane (a mug handle)."""
    q = p - p.new_tensor(centre)
    ring = torch.stack([torch.stack([q[..., 0], q[..., 2]], -1).norm(dim=-1) - major, q[..., 1]], dim=-1)
    return ring.norm(dim=-1) - minor


def _union(body: Tensor, feature: Tensor) -> tuple[Tensor, Tensor]:
    return torch.minimum(body, feature), feature < body


def object_sdf(kind: str, p: Tensor) -> tuple[Tensor, Tensor]:
    """Signed distance of ``p`` (..., 3) to the object, and the accent-feature mask."""
    no_accent = torch.zeros(p.shape[:-1], dtype=torch.bool, device=p.device)
    if kind == "sphere":
        return sphere(p, (0.0, 0.0, 0.0), 0.55), no_accent
    if kind == "cube":
        return box(p, (0.0, 0.0, 0.0), (0.42, 0.42, 0.42), rounding=0.03), no_accent
    if kind == "cylinder":
        return cylinder_z(p, (0.0, 0.0, 0.0), 0.38, 0.5), no_accent
    if kind == "cone":
        return cone_z(p, -0.5, 0.6, 0.5), no_accent
    if kind == "torus":
        return torus_z(p, 0.42, 0.2), no_accent
    if kind == "snowman":
        body = torch.minimum(sphere(p, (0.0, 0.0, -0.28), 0.36), sphere(p, (0.0, 0.0, 0.25), 0.26))
        nose = cone_x(p, 0.18, 0.64, 0.14, (0.0, 0.25))
        return _union(body, nose)
    if kind == "house":
        walls = box(p, (0.0, 0.0, -0.2), (0.4, 0.45, 0.32))
        # gable roof: a box rotated 45 degrees about x, cut at the walls' top
        y, z = p[..., 1], p[..., 2] - 0.12
        u, v = (y + z) * 0.7071, (z - y) * 0.7071
        roof_q = torch.stack([p[..., 0], u, v], dim=-1)
        roof = box(roof_q, (0.0, 0.0, 0.0), (0.46, 0.33, 0.33))
        roof = torch.maximum(roof, -(p[..., 2] - 0.12))
        body = torch.minimum(walls, roof)
        door = box(p, (0.42, 0.0, -0.3), (0.06, 0.16, 0.22))
        return _union(body, door)
    if kind == "mug":
        outer = cylinder_z(p, (0.0, -0.1, 0.0), 0.36, 0.45)
        inner = cylinder_z(p, (0.0, -0.1, 0.1), 0.29, 0.45)
        body = torch.maximum(outer, -inner)
        handle = torus_xz(p, 0.22, 0.07, (0.36, -0.1, 0.0))
        handle = torch.maximum(handle, -(p[..., 0] - 0.34))
        return _union(body, handle)
    raise ValueError(f"unknown object kind {kind!r}")
