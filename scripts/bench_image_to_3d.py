#!/usr/bin/env python
"""Image-to-3D benchmark (see lift3d/eval/image_to_3d.py): python scripts/bench_image_to_3d.py --out bench_runs/image_to_3d"""

from lift3d.eval.image_to_3d import main

if __name__ == "__main__":
    main()
