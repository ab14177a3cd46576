"""Image metrics of novel-view synthesis: PSNR, SSIM (scikit-image) and mask IoU."""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

FOREGROUND_THRESHOLD = 0.1
"""A pixel is foreground when a channel differs from the known background colour by more than this."""


def psnr(pred: Float[Tensor, "H W 3"], target: Float[Tensor, "H W 3"]) -> float:
    return float(peak_signal_noise_ratio(target.numpy(), pred.numpy(), data_range=1.0))


def ssim(pred: Float[Tensor, "H W 3"], target: Float[Tensor, "H W 3"]) -> float:
    return float(structural_similarity(target.numpy(), pred.numpy(), data_range=1.0, channel_axis=-1, win_size=7))


def foreground_mask(image: Float[Tensor, "H W 3"], background: Float[Tensor, "3"]) -> Bool[Tensor, "H W"]:
    """Pixels that are not the (known, solid) background colour."""
    return (image - background).abs().amax(-1) > FOREGROUND_THRESHOLD


def mask_iou(a: Bool[Tensor, "H W"], b: Bool[Tensor, "H W"]) -> float:
    """Intersection over union; two empty masks agree perfectly."""
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def novel_view_scores(
    pred: Float[Tensor, "B 3 H W"],
    target: Float[Tensor, "B 3 H W"],
    target_mask: Bool[Tensor, "B H W"],
    background: Float[Tensor, "B 3"],
) -> dict[str, float]:
    """Mean PSNR, SSIM and mask IoU of predicted views against ground-truth renders."""
    p, t = pred.permute(0, 2, 3, 1).float(), target.permute(0, 2, 3, 1).float()
    rows = [
        (psnr(p[i], t[i]), ssim(p[i], t[i]), mask_iou(foreground_mask(p[i], background[i]), target_mask[i]))
        for i in range(len(p))
    ]
    arr = np.asarray(rows)
    return {"psnr": float(arr[:, 0].mean()), "ssim": float(arr[:, 1].mean()), "mask_iou": float(arr[:, 2].mean()), "views": len(p)}
