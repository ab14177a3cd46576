"""What exists in the bundled procedural world: colours, object kinds, held-out pairs."""

from __future__ import annotations

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.15, 0.70, 0.20),
    "blue": (0.15, 0.25, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "white": (0.92, 0.92, 0.92),
    "pink": (1.00, 0.55, 0.75),
}
"""Albedo of each colour word (linear RGB in [0, 1])."""

ACCENT_ALBEDO = (0.08, 0.08, 0.08)
"""Albedo of the front features of asymmetric objects (door, nose, handle)."""

KINDS = ("sphere", "cube", "cylinder", "cone", "torus", "snowman", "house", "mug")
"""Object kinds, each defined as an SDF in :mod:`lift3d.priors.world.shapes`."""

ASYMMETRIC_KINDS = ("snowman", "house", "mug")
"""Kinds with a front feature on their +x side (azimuth 0): the Janus problem is measurable on them."""

HELD_OUT: tuple[tuple[str, str], ...] = (
    ("green", "house"),
    ("blue", "snowman"),
    ("yellow", "mug"),
    ("purple", "cube"),
)
"""(colour, kind) pairs never seen in training of any bundled prior; used to measure generalisation."""


def caption(colour: str, kind: str) -> str:
    """The caption of an object, e.g. ``a red house``."""
    return f"a {colour} {kind}"


def training_pairs() -> list[tuple[str, str]]:
    """All (colour, kind) pairs that appear in training."""
    return [(c, k) for c in COLOURS for k in KINDS if (c, k) not in HELD_OUT]


def parse_caption(text: str) -> tuple[str, str] | None:
    """(colour, kind) of a caption ``a <colour> <kind>[, <view> view]``, or None."""
    words = text.replace(",", " ").split()
    colours = [w for w in words if w in COLOURS]
    kinds = [w for w in words if w in KINDS]
    if len(colours) != 1 or len(kinds) != 1:
        return None
    return colours[0], kinds[0]
