"""Base of every registered module: a typed ``Config`` and a per-step hook."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn


@dataclass
class NoConfig:
    """A module without options."""


class Lift3DModule(nn.Module):
    """An ``nn.Module`` built from its ``Config`` dataclass."""

    Config: type = NoConfig
    registered_name: str = ""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.cfg = cfg

    def update_step(self, global_step: int) -> None:
        """Called before every training step; scheduled values are resolved here."""
