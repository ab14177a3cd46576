"""Scoring a run's test turntable against the bundled world's ground truth.

Definitions (also in README, "Bundled priors"):

- **classifier accuracy**: fraction of turntable frames whose colour (object, both) the
  evaluation classifier names as the caption does (frames resized to 32×32).
- **silhouette IoU**: per frame, the rendered opacity (> 0.5) is shifted and scaled about its
  centroid so that its centroid and area match the ground-truth mask of the object seen from
  the same camera; IoU of the two masks, averaged over frames. Aligning centre and scale
  makes the score about shape, not about where or how big the optimiser put the object.
- **Janus rate** (asymmetric objects, whose dark front feature faces azimuth 0): fraction of
  back views (|azimuth| > 135°) that show front-feature pixels (dark, max channel < 0.15,
  inside the silhouette) covering more than a quarter of what the ground-truth front view shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from lift3d.eval.novel_view import mask_iou
from lift3d.priors.world.catalog import ASYMMETRIC_KINDS
from lift3d.priors.world.render import WorldView, render_objects

DARK = 0.15
"""Max-channel value under which a foreground pixel counts as front feature (accent albedo 0.08)."""
BACK_AZIMUTH = 135.0
FRONT_AZIMUTH = 45.0


@dataclass
class Turntable:
    """Test-turntable frames of a run and their cameras (degrees, world units)."""

    rgb: Float[Tensor, "N 3 H W"]
    opacity: Float[Tensor, "N H W"]
    elevation: Float[Tensor, "N"]
    azimuth: Float[Tensor, "N"]
    distance: Float[Tensor, "N"]
    fovy: Float[Tensor, "N"]
    light_position: Float[Tensor, "N 3"]


def load_turntable(trial: Path) -> Turntable:
    """Read the newest ``save/it<N>-test/`` frames of a trial (rgb | normal | opacity panels)."""
    import lightning.pytorch as pl

    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.registry import find

    tests = sorted((trial / "save").glob("it*-test"), key=lambda p: int(p.name[2:-5]))
    if not tests:
        raise FileNotFoundError(f"{trial} has no test turntable (save/it<N>-test/); run launch.py with --test")
    files = sorted(tests[-1].glob("*.png"))
    cfg = parse(ExperimentConfig, load_mapping(trial / "configs" / "parsed.yaml", []))
    orbit = find(cfg.data_type, pl.LightningDataModule)(cfg.data).test_dataset  # the cameras the run's test used
    rgb, opacity, cams = [], [], []
    for f in files:
        img = torch.from_numpy(iio.imread(f).astype(np.float32) / 255.0)
        h = img.shape[0]
        rgb.append(img[:, :h].permute(2, 0, 1))
        opacity.append(img[:, -h:, 0])
        cams.append(orbit[int(f.stem)])
    return Turntable(
        rgb=torch.stack(rgb),
        opacity=torch.stack(opacity),
        elevation=torch.cat([c.elevation for c in cams]),
        azimuth=torch.cat([c.azimuth for c in cams]),
        distance=torch.cat([c.distance for c in cams]),
        fovy=torch.cat([c.fovy for c in cams]),
        light_position=torch.cat([c.light_position for c in cams]),
    )


def ground_truth_turntable(colour: str, kind: str, tt: Turntable, background: float = 1.0):
    """The world's render of the object from the turntable's cameras and lights."""
    n = tt.rgb.shape[0]
    view = WorldView(
        elevation=tt.elevation, azimuth=tt.azimuth, distance=tt.distance, fovy=tt.fovy,
        light_position=tt.light_position, background=torch.full((n, 3), background), unlit=torch.zeros(n, dtype=torch.bool),
    )
    return render_objects([kind] * n, [colour] * n, view, resolution=tt.rgb.shape[-1])


def align_to(mask: Float[Tensor, "H W"], target: Bool[Tensor, "H W"]) -> Bool[Tensor, "H W"]:
    """``mask`` (soft, thresholded at 0.5) moved and scaled so its centroid and area match ``target``'s."""
    m = (mask > 0.5).float()
    t = target.float()
    if m.sum() == 0 or t.sum() == 0:
        return m > 0.5
    h, w = m.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    cm = torch.stack([(xs * m).sum(), (ys * m).sum()]) / m.sum()
    ct = torch.stack([(xs * t).sum(), (ys * t).sum()]) / t.sum()
    scale = (m.sum() / t.sum()).sqrt()  # > 1 when the mask is bigger than the target: sample wider
    grid = (torch.stack([xs, ys], -1) - ct) * scale + cm
    warped = F.grid_sample(m[None, None], grid[None], mode="bilinear", align_corners=True)[0, 0]
    return warped > 0.5


def silhouette_iou(opacity: Float[Tensor, "N H W"], gt_mask: Bool[Tensor, "N H W"]) -> float:
    """Mean over frames of the centre-and-scale-aligned silhouette IoU."""
    return float(np.mean([mask_iou(align_to(opacity[i], gt_mask[i]), gt_mask[i]) for i in range(len(gt_mask))]))


def classifier_accuracy(tt: Turntable, colour: str, kind: str, classifier=None) -> dict[str, float]:
    from lift3d.eval.world_classifier import load_classifier

    clf = classifier or load_classifier()
    frames = F.interpolate(tt.rgb, size=(32, 32), mode="area") if tt.rgb.shape[-1] != 32 else tt.rgb
    pred = clf.predict(frames)
    c = np.array([p == colour for p in pred["colour"]])
    k = np.array([p == kind for p in pred["kind"]])
    return {"colour": float(c.mean()), "kind": float(k.mean()), "both": float((c & k).mean())}


def feature_fraction(rgb: Float[Tensor, "3 H W"], fg: Bool[Tensor, "H W"]) -> float:
    """Area of front-feature (dark) pixels inside the silhouette, as a fraction of the image."""
    dark = rgb.amax(0) < DARK
    return (dark & fg).float().mean().item()


def janus_rate(tt: Turntable, kind: str, gt) -> dict[str, float] | None:
    """How often back views show the front feature, and how often front views show it (None if symmetric)."""
    if kind not in ASYMMETRIC_KINDS:
        return None
    az = ((tt.azimuth + 180.0).remainder(360.0) - 180.0).abs()  # any azimuth convention, e.g. 0..360
    front, back = az < FRONT_AZIMUTH, az > BACK_AZIMUTH
    gt_rgb = gt.rgb.permute(0, 3, 1, 2)
    reference = np.mean([feature_fraction(gt_rgb[i], gt.mask[i]) for i in torch.nonzero(front).flatten().tolist()])
    shows = np.array([feature_fraction(tt.rgb[i], tt.opacity[i] > 0.5) > 0.25 * reference for i in range(len(az))])
    return {"janus": float(shows[back.numpy()].mean()), "front_feature_seen": float(shows[front.numpy()].mean())}


def mean_saturation(rgb: Float[Tensor, "N 3 H W"], mask: Bool[Tensor, "N H W"]) -> float:
    """Mean HSV saturation, (max - min) / max of the channels, over the pixels in ``mask``."""
    hi, lo = rgb.amax(1), rgb.amin(1)
    s = (hi - lo) / hi.clamp(min=1e-6)
    return float(s[mask].mean()) if bool(mask.any()) else 0.0


def saturation(tt: Turntable, gt) -> dict[str, float]:
    """Mean colour saturation of the turntable's object (opacity > 0.5) and of the true object's."""
    return {"render": mean_saturation(tt.rgb, tt.opacity > 0.5), "truth": mean_saturation(gt.rgb.permute(0, 3, 1, 2), gt.mask)}


def soft_fraction(opacity: Float[Tensor, "N H W"], lo: float = 0.05, hi: float = 0.95) -> float:
    """Half-transparent pixels (opacity in (lo, hi)) per pixel of the object (opacity > 0.5): how fuzzy
    the silhouettes are; over-smoothed (blurry) runs score high, a crisp surface near the edge width."""
    soft = ((opacity > lo) & (opacity < hi)).sum()
    return float(soft / (opacity > 0.5).sum().clamp(min=1))
