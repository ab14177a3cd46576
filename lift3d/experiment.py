"""The top-level experiment config: which system and data, how to train, where to write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from lift3d.config import module_field


@dataclass
class TrainerConfig:
    """Lightning trainer settings."""

    max_steps: int = 10000
    """Optimisation steps."""
    val_check_interval: int = 200
    """Steps between validations."""
    log_every_n_steps: int = 10
    """Steps between metric logs (per-step metrics are passed to the logger only on these
    steps; the progress bar's loss every step)."""
    precision: str = "32-true"
    """Lightning precision setting (e.g. 16-mixed on GPUs)."""
    enable_progress_bar: bool = True
    """Show a progress bar."""


@dataclass
class CheckpointConfig:
    """When checkpoints are written (always ``ckpts/last.ckpt`` at the end and on Ctrl-C)."""

    every_n_train_steps: int = 1000
    """Steps between checkpoints."""
    save_top_k: int = -1
    """How many periodic checkpoints to keep (-1: all)."""


@dataclass
class ExportConfig:
    """Mesh export settings (``--export``)."""

    resolution: int = 128
    """Marching-cubes grid resolution."""
    threshold: Optional[float] = None
    """Density of the isosurface; null: chosen by ``threshold_rule``."""
    threshold_rule: Literal["silhouettes", "otsu"] = "silhouettes"
    """Automatic level: ``silhouettes`` picks the density whose surface's silhouettes best match the
    NeRF's (opacity > 0.5) from ``silhouette_views`` test cameras, so haze is left out; ``otsu`` is
    Otsu's method on log density (needs no cameras; often closes around haze)."""
    silhouette_views: int = 8
    """Test cameras (evenly spaced over the turntable) the ``silhouettes`` rule compares against."""
    warn_iou: float = 0.85
    """Warn when the export's silhouettes match the NeRF's worse than this IoU (mean over the test turntable)."""
    coarse_to_fine: bool = False
    """Find the occupied box on a 4x coarser grid first, then run marching cubes at full resolution inside it."""
    formats: list[Literal["obj", "glb", "ply"]] = field(default_factory=lambda: ["obj", "glb"])
    """Files to write: obj (OBJ + MTL + PNG texture), glb (PBR base-colour texture), ply (vertex colours)."""
    min_component_fraction: float = 0.05
    """Drop connected pieces with fewer faces than this fraction of the largest piece (0 keeps all)."""
    smooth_iterations: int = 5
    """Taubin smoothing passes before decimation (0: none); smooth meshes unwrap much faster."""
    max_faces: int = 10000
    """Decimate to at most this many faces before unwrapping (0: no decimation)."""
    texture_size: int = 512
    """Width and height of the baked texture in texels."""
    texture_dilation: int = 8
    """Rings of texels filled outside the UV charts so filtering at seams never reaches background."""


@dataclass
class ExperimentConfig:
    """A run: ``outputs/<name>/<tag>@<timestamp>/``."""

    name: str = "default"
    """Experiment name (first level of the output folder)."""
    tag: str = ""
    """Trial name; empty: derived from the prompt."""
    seed: int = 0
    """Seed of every random generator."""
    exp_root_dir: str = "outputs"
    """Root folder of all runs."""
    use_timestamp: bool = True
    """Append @<timestamp> to the trial folder."""
    resume: Optional[str] = None
    """Checkpoint file or trial directory to resume from (full state: weights, optimizer, step, RNG)."""
    data_type: str = "random-camera-datamodule"
    """Registered data module."""
    data: object = module_field("data_type", "lightning.pytorch.LightningDataModule")
    """Config of the data module."""
    system_type: str = "dreamfusion-system"
    """Registered system (method)."""
    system: object = module_field("system_type", "lift3d.systems.base.BaseLift3DSystem")
    """Config of the system."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    """Trainer settings."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoint settings."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """Mesh export settings."""
