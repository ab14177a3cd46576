#!/usr/bin/env python
"""lift3d's command line; the same as the ``lift3d`` console script. See ``python launch.py --help``."""

from lift3d.cli import main

if __name__ == "__main__":
    main()
