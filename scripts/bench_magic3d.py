#!/usr/bin/env python
"""Magic3D (coarse + refine) benchmark beside DreamFusion on the bundled prior; see lift3d/eval/magic3d_benchmark.py."""

from lift3d.eval.magic3d_benchmark import main

if __name__ == "__main__":
    main()
