"""The bundled priors: a procedural object world, their training, their weights."""

from __future__ import annotations

from pathlib import Path

BUNDLED_PREFIX = "bundled:"
WEIGHTS_DIR = Path(__file__).parent / "weights"
BUNDLED = {"text": WEIGHTS_DIR / "text", "text-camera": WEIGHTS_DIR / "text-camera", "view": WEIGHTS_DIR / "view"}
"""Names of the bundled priors and their directories (diffusers layout)."""
