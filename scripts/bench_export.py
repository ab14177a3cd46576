#!/usr/bin/env python
"""Export benchmark over trained runs; see lift3d/eval/export_benchmark.py."""

from lift3d.eval.export_benchmark import main

if __name__ == "__main__":
    main()
