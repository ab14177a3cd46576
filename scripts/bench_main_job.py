#!/usr/bin/env python
"""Main-job benchmark on the bundled prior; see lift3d/eval/main_job_benchmark.py."""

from lift3d.eval.main_job_benchmark import main

if __name__ == "__main__":
    main()
