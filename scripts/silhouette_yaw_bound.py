#!/usr/bin/env python
"""How much a right shape turned the wrong way scores: the benchmarks' silhouette IoU of an object's
true turntable against the same object turned about the vertical axis by a few angles.

A prior that knows the camera only by view bin (front, side, back, overhead: quarter turns) cannot
tell a cube's or a house's yaw within a bin, so this bounds what a perfect shape at an unknown yaw
scores on the Magic3D benchmark (README, "The Magic3D benchmark").

    python scripts/silhouette_yaw_bound.py --kinds cube house
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lift3d.eval.turntable import Turntable, ground_truth_turntable, silhouette_iou


def turntable(yaw: float, frames: int = 60, resolution: int = 64) -> Turntable:
    """The benchmarks' test turntable (elevation 15, distance 2.5, fovy 45), every azimuth moved by ``yaw``."""
    azimuth = torch.linspace(-180.0, 180.0, frames + 1)[:-1] + yaw
    full = lambda value: torch.full((frames,), value)  # noqa: E731
    return Turntable(
        rgb=torch.zeros(frames, 3, resolution, resolution), opacity=torch.zeros(frames, resolution, resolution),
        elevation=full(15.0), azimuth=azimuth, distance=full(2.5), fovy=full(45.0),
        light_position=torch.tensor([[3.0, 0.0, 3.0]]).repeat(frames, 1),
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
