"""One input image for image-to-3D: read, foreground found, recentred, resized.

The foreground comes from the alpha channel when the image has a non-trivial one; otherwise the
background is taken to be one uniform colour, estimated as the median of the border pixels, and
keyed out (no downloaded matting model). Every problem is a :class:`~lift3d.errors.ConfigError`
of one line, raised before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from lift3d.errors import ConfigError

KEY_THRESHOLD = 0.1
"""A pixel is foreground when a channel differs from the border colour by more than this."""
MIN_FOREGROUND = 0.002
"""Below this fraction of foreground pixels the image is called empty."""
MAX_FOREGROUND = 0.98
"""Above this fraction the image is called all foreground (no background to key out)."""


@dataclass
class ReferenceImage:
    """The reference view as the system uses it (H = W)."""

    rgb: Float[Tensor, "H W 3"]
    """Colours in [0, 1], the background pixels set to ``background``."""
    mask: Float[Tensor, "H W 1"]
    """Foreground in [0, 1] (soft at the edges after resizing)."""
    background: Float[Tensor, "3"]
    """The background colour: the border median for keyed images, white for images with alpha."""
    foreground_fraction: float
    """Share of foreground pixels in the input image."""
    depth: Float[Tensor, "H W 1"] | None = None
    """Relative depth of the input (larger is farther; any scale and offset), when one was given."""


def read_image(path: Path, where: str) -> np.ndarray:
    """(H, W, 3 or 4) float in [0, 1]; a missing file or a non-image is a one-line error."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{where}: {path} does not exist; give the path of a PNG or JPEG image")
    try:
        with Image.open(path) as im:
            im = im.convert("RGBA") if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info else im.convert("RGB")
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"{where}: {path} is not an image lift3d can read ({type(exc).__name__}); give a PNG or JPEG") from exc
    return arr


def find_foreground(image: np.ndarray, where: str) -> tuple[Bool[Tensor, "H W"], Float[Tensor, "H W"], Float[Tensor, "3"], str]:
    """(hard mask, soft alpha, background colour, how) of an RGB or RGBA image."""
    rgb = torch.from_numpy(np.ascontiguousarray(image[..., :3]))
    if image.shape[-1] == 4 and (image[..., 3] < 0.99).any():
        alpha = torch.from_numpy(np.ascontiguousarray(image[..., 3]))
        return alpha > 0.5, alpha, torch.ones(3), "alpha"
    border = torch.cat([rgb[0], rgb[-1], rgb[1:-1, 0], rgb[1:-1, -1]])
    background = border.median(dim=0).values
    spread = (border - background).abs().amax(-1)
    if (spread > KEY_THRESHOLD).float().mean() > 0.5:
        raise ConfigError(
            f"{where}: the image has no alpha and its border is not one uniform colour, so lift3d cannot key out the "
            "background; give an RGBA PNG with the object's alpha, or put the object on a plain background"
        )
    mask = (rgb - background).abs().amax(-1) > KEY_THRESHOLD
    return mask, mask.float(), background, "keyed"


def recentre(
    rgb: Tensor, alpha: Tensor, mask: Tensor, background: Tensor, border_ratio: float
) -> tuple[Tensor, Tensor]:
    """Crop a square around the foreground's box and pad it so the box fills ``1 - 2 * border_ratio`` of the side
    (``rgb`` may carry more channels than three, e.g. depth, with as many ``background`` values)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    side = max(y1 - y0, x1 - x0)
    out_side = int(np.ceil(side / max(1e-6, 1 - 2 * border_ratio)))
    canvas = background.view(1, 1, -1).expand(out_side, out_side, background.numel()).clone()
    canvas_alpha = torch.zeros(out_side, out_side)
    cy, cx = (out_side - (y1 - y0)) // 2, (out_side - (x1 - x0)) // 2
    canvas[cy : cy + y1 - y0, cx : cx + x1 - x0] = rgb[y0:y1, x0:x1]
    canvas_alpha[cy : cy + y1 - y0, cx : cx + x1 - x0] = alpha[y0:y1, x0:x1]
    return canvas, canvas_alpha


def read_depth(path: Path, shape: tuple[int, int], where: str) -> Tensor:
    """(H, W) relative depth from a .npy array or a grayscale PNG of the image's size."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{where}: {path} does not exist; give a .npy array or a grayscale PNG of the input's depth")
    if path.suffix == ".npy":
        try:
            depth = np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise ConfigError(f"{where}: {path} is not a numeric .npy array ({exc})") from exc
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                depth = np.asarray(im, dtype=np.float32)
        except (UnidentifiedImageError, OSError) as exc:
            raise ConfigError(f"{where}: {path} is neither a .npy array nor an image ({type(exc).__name__})") from exc
    depth = depth[..., 0] if depth.ndim == 3 else depth
    if depth.shape != shape:
        raise ConfigError(f"{where}: the depth map is {depth.shape[1]}x{depth.shape[0]} but the image is {shape[1]}x{shape[0]}; "
                          "give a depth map of the same size")
    if not np.isfinite(depth).all():
        raise ConfigError(f"{where}: the depth map holds NaN or inf values; fill them (e.g. with the background's depth)")
    return torch.from_numpy(np.ascontiguousarray(depth))


def load_reference_image(
    path: Path, resolution: int, recentre_object: bool, border_ratio: float, where: str, depth_path: Path | None = None
) -> ReferenceImage:
    """The reference image at ``resolution`` x ``resolution``, with its foreground and background
    (and its depth map, recentred and resized the same way, when ``depth_path`` is given)."""
    image = read_image(path, where)
    h, w = image.shape[:2]
    if not recentre_object and h != w:
        raise ConfigError(f"{where}: {path} is {w}x{h}, not square; crop it square or set recentre: true")
    mask, alpha, background, _how = find_foreground(image, where)
    fraction = float(mask.float().mean())
    if fraction < MIN_FOREGROUND:
        raise ConfigError(f"{where}: no foreground found in {path} (the object covers {fraction:.2%} of it); "
                          "check the alpha channel, or that the object differs from the background colour")
    if fraction > MAX_FOREGROUND:
        raise ConfigError(f"{where}: {path} is foreground almost everywhere ({fraction:.1%}); give an image with "
                          "background around the object (alpha, or a plain border)")
    rgb = torch.from_numpy(np.ascontiguousarray(image[..., :3]))
    rgb = rgb * alpha[..., None] + background * (1 - alpha[..., None])
    fill = background
    if depth_path is not None:  # the depth rides along as a fourth channel through the crop and resize
        rgb = torch.cat([rgb, read_depth(depth_path, (h, w), where.rsplit(".", 1)[0] + ".depth_path")[..., None]], dim=-1)
        fill = torch.cat([background, torch.zeros(1)])
    if recentre_object:
        rgb, alpha = recentre(rgb, alpha, mask, fill, border_ratio)
    rgb, alpha = _resize(rgb, resolution), _resize(alpha[..., None], resolution)
    depth = rgb[..., 3:] if depth_path is not None else None
    return ReferenceImage(rgb=rgb[..., :3].clamp(0, 1), mask=alpha.clamp(0, 1), background=background, foreground_fraction=fraction,
                          depth=depth)


def _resize(img: Tensor, size: int) -> Tensor:
    if img.shape[0] == size and img.shape[1] == size:
        return img
    x = img.permute(2, 0, 1)[None]
    x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
    return x[0].permute(1, 2, 0)
