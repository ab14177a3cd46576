"""Baking a texture: rasterize the mesh in UV space, query the field at the surface, fill seams."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lift3d.renderers.rasterizer import MeshRasterizer, interpolate


@torch.no_grad()
def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    uvs: np.ndarray,
    albedo_at: Callable[[torch.Tensor], torch.Tensor],
    size: int = 1024,
    dilation: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(size, size, 3) texture in [0, 1] (row 0 is v = 1, as image files store it) and its texel mask.

    ``albedo_at`` maps (N, 3) world points to (N, 3) colours. Texels outside every chart take
    the mean of covered neighbours, ``dilation`` rings deep, so filtering at seams never pulls in
    background.
    """
    uv = torch.from_numpy(uvs).double()
    clip = torch.cat([uv * 2 - 1, torch.zeros(len(uv), 1, dtype=uv.dtype), torch.ones(len(uv), 1, dtype=uv.dtype)], -1)[None]
    f = torch.from_numpy(faces).long()
    rast = MeshRasterizer().rasterize(clip, f, (size, size))
    pts = interpolate(torch.from_numpy(vertices).double(), rast, f)[0]
    mask = rast.mask[0]
    tex = torch.zeros(size, size, 3)
    if mask.any():
        tex[mask] = albedo_at(pts[mask].float()).float().clamp(0, 1)
    tex, _ = dilate(tex, mask, dilation)
    return tex.numpy(), mask.numpy()


def dilate(tex: torch.Tensor, mask: torch.Tensor, rings: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grow covered texels outward ``rings`` times by averaging covered 3x3 neighbours."""
    kernel = torch.ones(1, 1, 3, 3)
    tex, filled = tex.clone(), mask.clone()
    for _ in range(rings):
        w = F.conv2d(filled[None, None].float(), kernel, padding=1)[0, 0]
        s = F.conv2d((tex * filled[..., None]).permute(2, 0, 1)[:, None], kernel, padding=1)[:, 0].permute(1, 2, 0)
        grow = (~filled) & (w > 0)
        if not grow.any():
            break
        tex[grow] = s[grow] / w[grow][:, None]
        filled = filled | grow
    return tex, filled
