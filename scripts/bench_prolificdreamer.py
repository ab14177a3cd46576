#!/usr/bin/env python
"""VSD (ProlificDreamer) against SDS at the same guidance scale and DreamFusion's preset; see lift3d/eval/prolificdreamer_benchmark.py."""

from lift3d.eval.prolificdreamer_benchmark import main

if __name__ == "__main__":
    main()
