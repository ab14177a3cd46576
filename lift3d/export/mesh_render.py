"""Rendering an exported textured mesh with the mesh rasterizer (turntables of exports, scoring)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from lift3d.data.batch import CameraBatch
from lift3d.renderers.rasterizer import MeshRasterizer, interpolate


@torch.no_grad()
def render_textured_mesh(
    vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture: np.ndarray, batch: CameraBatch,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0), rasterizer: MeshRasterizer | None = None,
) -> tuple[Float[Tensor, "B H W 3"], Bool[Tensor, "B H W"]]:
    """Albedo renders (texture sampled bilinearly) and coverage masks of the mesh from ``batch``'s cameras."""
    r = rasterizer or MeshRasterizer()
    v = torch.from_numpy(vertices).float()
    f = torch.from_numpy(faces).long()
    clip = torch.cat([v, torch.ones(len(v), 1)], -1) @ batch.mvp.transpose(1, 2)  # (B, V, 4)
    rast = r.rasterize(clip, f, (batch.height, batch.width))
    uv = interpolate(torch.from_numpy(uvs).float(), rast, f)  # (B, H, W, 2)
    grid = torch.stack([uv[..., 0] * 2 - 1, 1 - uv[..., 1] * 2], -1)
    tex = torch.from_numpy(np.ascontiguousarray(texture)).float().permute(2, 0, 1)[None].expand(len(uv), -1, -1, -1)
    rgb = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
    bg = torch.tensor(background).expand_as(rgb)
    return torch.where(rast.mask[..., None], rgb, bg), rast.mask
