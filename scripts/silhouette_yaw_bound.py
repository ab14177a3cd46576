#!/usr/bin/env python
"""How much a right shape turned the wrong way scores: the benchmarks' silhouette IoU of an object's
true turntable (the Magic3D preset's test cameras) against the same object turned about the
vertical axis by a few angles.

A prior that knows the camera only by view bin (front, side, back, overhead: quarter turns) cannot
tell a cube's or a house's yaw within a bin, so this bounds what a perfect shape at an unknown yaw
scores on the Magic3D benchmark (README, "The Magic3D benchmark").

    python scripts/silhouette_yaw_bound.py --kinds cube house
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lift3d.eval.turntable import Turntable, ground_truth_turntable, silhouette_iou

PRESET = Path(__file__).resolve().parents[1] / "configs" / "magic3d-refine-bundled.yaml"


def turntable(yaw: float, preset: Path = PRESET) -> Turntable:
    """The preset's test turntable (the cameras its runs are scored from), the object turned by ``yaw`` degrees."""
    import lightning.pytorch as pl

    from lift3d.config import load_mapping, parse
    from lift3d.experiment import ExperimentConfig
    from lift3d.registry import find

    cfg = parse(ExperimentConfig, load_mapping(preset, ["system.geometry_convert_from=none", "system.prompt_processor.prompt=none"]))
    orbit = find(cfg.data_type, pl.LightningDataModule)(cfg.data).test_dataset
    cams = [orbit.camera(i, azimuth_offset=yaw) for i in range(len(orbit))]
    res = cfg.data.eval_resolution
    cat = lambda name: torch.cat([getattr(c, name) for c in cams])  # noqa: E731
    return Turntable(
        rgb=torch.zeros(len(cams), 3, res, res), opacity=torch.zeros(len(cams), res, res), elevation=cat("elevation"),
        azimuth=cat("azimuth"), distance=cat("distance"), fovy=cat("fovy"), light_position=cat("light_position"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["cube", "house"])
    ap.add_argument("--yaws", nargs="+", type=float, default=[0, 5, 10, 15, 20, 25, 30, 35, 40, 45])
    args = ap.parse_args()
    print("| object | " + " | ".join(f"{y:g}°" for y in args.yaws) + " | mean |\n|---|" + "---|" * (len(args.yaws) + 1))
    for kind in args.kinds:
        truth = ground_truth_turntable("green", kind, turntable(0.0)).mask
        scores = [silhouette_iou(ground_truth_turntable("green", kind, turntable(y)).mask.float(), truth) for y in args.yaws]
        print(f"| {kind} | " + " | ".join(f"{s:.3f}" for s in scores) + f" | {np.mean(scores):.3f} |")


if __name__ == "__main__":
    main()
