"""Small fully connected networks for the geometry heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn as nn


@dataclass
class MLPConfig:
    """Options of a small MLP."""

    n_neurons: int = 64
    """Width of each hidden layer."""
    n_hidden_layers: int = 1
    """Number of hidden layers."""
    activation: Literal["relu", "silu"] = "relu"
    """Activation between layers."""


def make_mlp(n_in: int, n_out: int, cfg: MLPConfig) -> nn.Sequential:
    act = {"relu": nn.ReLU, "silu": nn.SiLU}[cfg.activation]
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(cfg.n_hidden_layers):
        layers += [nn.Linear(width, cfg.n_neurons), act()]
        width = cfg.n_neurons
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)
