#!/usr/bin/env python
"""Train the bundled text-to-image prior from scratch (seeded, resumable).

    python scripts/train_text_prior.py --out prior_runs/text --steps 1400 --batch-size 32
    cp -r prior_runs/text/prior/. lift3d/priors/weights/text/
"""

from lift3d.priors.text_prior.train import main

if __name__ == "__main__":
    main()
