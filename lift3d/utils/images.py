"""Turning render outputs into images and videos on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lift3d.utils.io import atomic_path


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> (H, W, 3) uint8."""
    arr = img.detach().float().cpu().clamp(0, 1).numpy()
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return (arr * 255).round().astype(np.uint8)


def side_by_side(images: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([to_uint8(i) for i in images], axis=1)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 30) -> None:
    """Write an mp4 (H.264 via imageio-ffmpeg) atomically."""
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", quality=8, macro_block_size=1)
        for frame in frames:
            writer.append_data(frame)
        writer.close()
