"""``neural-environment-map``: an MLP from view direction to colour (DreamFusion's background)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from lift3d.backgrounds.base import BaseBackground
from lift3d.registry import register


@register("neural-environment-map")
class NeuralEnvironmentMap(BaseBackground):
    @dataclass
    class Config:
        n_frequencies: int = 4
        """Sinusoidal encoding frequencies of the direction."""
        n_neurons: int = 32
        """Hidden width of the MLP."""
        n_hidden_layers: int = 2
        """Hidden layers of the MLP."""
        random_aug: bool = False
        """During training, replace the background by a random solid colour with probability ``random_aug_prob``."""
        random_aug_prob: float = 0.5
        """Probability of the random colour, per training image."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        n_in = 3 + 6 * cfg.n_frequencies
        layers: list[nn.Module] = []
        for _ in range(cfg.n_hidden_layers):
            layers += [nn.Linear(n_in, cfg.n_neurons), nn.ReLU()]
            n_in = cfg.n_neurons
        layers.append(nn.Linear(n_in, 3))
        self.mlp = nn.Sequential(*layers)

    def encode(self, d: torch.Tensor) -> torch.Tensor:
        freqs = 2.0 ** torch.arange(self.cfg.n_frequencies, device=d.device, dtype=d.dtype) * torch.pi
        x = d[..., None] * freqs
        return torch.cat([d, torch.sin(x).flatten(-2), torch.cos(x).flatten(-2)], dim=-1)

    def forward(self, dirs):
        colour = torch.sigmoid(self.mlp(self.encode(dirs)))
        if self.training and self.cfg.random_aug:
            b = dirs.shape[0]
            rand = torch.rand(b, 1, 1, 3, device=dirs.device).expand_as(colour)
            use = (torch.rand(b, 1, 1, 1, device=dirs.device) < self.cfg.random_aug_prob)
            colour = torch.where(use, rand, colour)
        return colour
