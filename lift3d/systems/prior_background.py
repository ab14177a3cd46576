"""A prior trained on one background colour must be distilled from renders on that colour.

``bundled:text-camera`` saw only mid grey (its ``model_index.json`` records it): renders on any
other background, or on random colours, are out of its distribution. The check runs when the
config is parsed, before any work.
"""

from __future__ import annotations

import math


def prior_background_errors(cfg, path: str) -> list[str]:
    """Errors for a system config (``cfg`` at ``path``) whose guidance prior records a training
    background that its background module does not render: a solid colour, neither random nor learned."""
    from lift3d.errors import PriorError
    from lift3d.guidance.prior_path import resolve_prior_path
    from lift3d.priors.text_prior.camera import training_background

    name = getattr(cfg.guidance, "pretrained_model_name_or_path", None)
    if not name:
        return []
    try:
        colour = training_background(resolve_prior_path(name))
    except PriorError:
        return []  # an unknown prior is reported when the guidance is built
    if colour is None:
        return []
    bg = cfg.background
    if (cfg.background_type == "solid-color" and not bg.random_aug and not bg.learned
            and all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(bg.color, colour))):
        return []
    rgb = "[" + ", ".join(f"{c:g}" for c in colour) + "]"
    return [f"{path}.background: the prior {name} was trained on one background colour, {rgb}; set "
            f"{path}.background_type=solid-color {path}.background.color={rgb} {path}.background.random_aug=false "
            f"{path}.background.learned=false"]
