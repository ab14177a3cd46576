#!/usr/bin/env python
"""Render world objects as image-to-3D inputs: a PNG, its true depth (16-bit PNG, mm) and a JSON sidecar (true camera, object) each.

    python scripts/make_example_images.py --out examples/images

By default the 4 held-out objects and 4 training objects of the image-to-3D benchmark.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lift3d.priors.world.examples import benchmark_examples, write_example


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("examples/images"))
    ap.add_argument("--resolution", type=int, default=128)
    args = ap.parse_args()
    for colour, kind in benchmark_examples():
        print(write_example(args.out, colour, kind, args.resolution))


if __name__ == "__main__":
    main()
