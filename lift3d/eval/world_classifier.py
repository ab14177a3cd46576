"""Evaluation classifier of the bundled world: (object, colour, view bucket) from a 32x32 image.

It plays the role CLIP R-precision plays in the DreamFusion paper. It is trained on its own
renders (a seed the priors never use), on every (colour, object) pair including the held-out
ones, and is used only to score priors and 3D results, never to train them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lift3d.priors import WEIGHTS_DIR
from lift3d.priors.world.catalog import COLOURS, KINDS
from lift3d.prompts.view_dependent import VIEW_NAMES

CLASSIFIER_DIR = WEIGHTS_DIR / "classifier"
COLOUR_NAMES = tuple(COLOURS)


class WorldClassifier(nn.Module):
    """A small CNN with three heads."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, w, 3, padding=1, stride=2), nn.GroupNorm(8, w), nn.SiLU(),  # 16
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1, stride=2), nn.GroupNorm(8, 2 * w), nn.SiLU(),  # 8
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1, stride=2), nn.GroupNorm(8, 4 * w), nn.SiLU(),  # 4
            nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU(),
        )
        self.kind = nn.Linear(256, len(KINDS))
        self.colour = nn.Linear(256, len(COLOURS))
        self.view = nn.Linear(256, len(VIEW_NAMES))
        self.width = width

    def forward(self, images: Float[Tensor, "B 3 32 32"]) -> tuple[Tensor, Tensor, Tensor]:
        """Logits of object kind, colour and view bucket for images in [0, 1]."""
        h = self.features(images * 2 - 1)
        return self.kind(h), self.colour(h), self.view(h)

    @torch.no_grad()
    def predict(self, images: Float[Tensor, "B 3 H W"]) -> dict[str, list[str]]:
        """Names of the predicted kind, colour and view (images resized to 32x32 if needed)."""
        if images.shape[-1] != 32:
            images = F.interpolate(images, (32, 32), mode="bilinear", align_corners=False, antialias=True)
        k, c, v = self(images)
        return {
            "kind": [KINDS[i] for i in k.argmax(-1).tolist()],
            "colour": [COLOUR_NAMES[i] for i in c.argmax(-1).tolist()],
            "view": [VIEW_NAMES[i] for i in v.argmax(-1).tolist()],
        }

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        from lift3d.utils.io import atomic_path

        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        (path / "config.json").write_text(json.dumps({"width": self.width, "kinds": KINDS, "colours": COLOUR_NAMES, "views": VIEW_NAMES}))


def load_classifier(path: Path = CLASSIFIER_DIR) -> WorldClassifier:
    from safetensors.torch import load_file

    from lift3d.errors import PriorError

    if not (path / "model.safetensors").is_file():
        raise PriorError(f"no evaluation classifier at {path}; train it with scripts/train_eval_classifier.py")
    cfg = json.loads((path / "config.json").read_text())
    model = WorldClassifier(cfg["width"])
    model.load_state_dict(load_file(path / "model.safetensors"))
    return model.eval()
