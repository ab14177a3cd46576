#!/usr/bin/env python
"""Train the bundled view-conditioned (Zero-1-to-3 style) prior from scratch (seeded, resumable).

    python scripts/train_view_prior.py --out prior_runs/view --steps 1500 --batch-size 32
    cp -r prior_runs/view/prior/. lift3d/priors/weights/view/
"""

from lift3d.priors.view_prior.train import main

if __name__ == "__main__":
    main()
