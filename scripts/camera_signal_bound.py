#!/usr/bin/env python
"""How much can a text prior gain, in its training loss, from knowing the exact camera?

At the noisiest timesteps an x0-predicting prior's best answer is the mean image of everything
its conditioning allows. This script estimates that mean from world renders twice: once for a
prior told the exact camera (azimuth 20°, elevation 15°), once for a prior told only the view
bin (any azimuth in the front bin, −45°…45°), and scores both on fresh renders from the exact
camera. The gap is what the camera can buy in the loss; distance, field of view and light stay
random as in the training data. It is measured on random backgrounds (the bundled text prior's
data) and on one fixed background.

    python scripts/camera_signal_bound.py
"""

from __future__ import annotations

import argparse

import torch

from lift3d.priors.world.render import WorldView, render_objects, sample_views


def renders(kind: str, colour: str, azimuth: torch.Tensor, background: float | None, g: torch.Generator) -> torch.Tensor:
    """(N, 32, 32, 3) renders at elevation 15° and the given azimuths, in [-1, 1] (the prior's range)."""
    n = azimuth.shape[0]
    v = sample_views(n, g)
    bg = v.background if background is None else torch.full((n, 3), background)
    view = WorldView(torch.full((n,), 15.0), azimuth, v.distance, v.fovy, v.light_position, bg, v.unlit)
    return render_objects([kind] * n, [colour] * n, view).rgb * 2 - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--renders", type=int, default=512, help="renders per estimate")
    ap.add_argument("--background", type=float, default=0.5, help="the fixed background's grey level")
    args = ap.parse_args()
    torch.set_num_threads(2)
    objects = [("cube", "green"), ("house", "red"), ("mug", "pink"), ("snowman", "white"), ("sphere", "blue")]
    print("| object | background | x0 MSE, exact camera | x0 MSE, view bin only | the camera's share |")
    print("|---|---|---|---|---|")
    for background in (None, args.background):
        for kind, colour in objects:
            g = torch.Generator().manual_seed(0)
            n = args.renders
            exact = torch.full((n,), 20.0)
            mean_exact = renders(kind, colour, exact, background, g).mean(0)
            mean_bin = renders(kind, colour, torch.rand(n, generator=g) * 90 - 45, background, g).mean(0)
            test = renders(kind, colour, exact, background, g)
            e_exact = (test - mean_exact).pow(2).mean().item()
            e_bin = (test - mean_bin).pow(2).mean().item()
            name = "random" if background is None else f"grey {background:g}"
            print(f"| {kind} | {name} | {e_exact:.4f} | {e_bin:.4f} | {100 * (e_bin - e_exact) / e_bin:.1f} % |")


if __name__ == "__main__":
    main()
