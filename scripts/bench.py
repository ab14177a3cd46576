#!/usr/bin/env python
"""Benchmark table for this machine; see lift3d/bench.py."""

from lift3d.bench import main

if __name__ == "__main__":
    main()
