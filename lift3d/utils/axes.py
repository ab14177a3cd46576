"""Up-axis conventions: lift3d's world is +z up; glTF (GLB) files are +y up by specification."""

from __future__ import annotations

from pathlib import Path

import numpy as np

Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Rotation taking a +y-up frame (glTF) to lift3d's +z-up world: x stays, y becomes z, z becomes -y."""

Z_UP_TO_Y_UP = Y_UP_TO_Z_UP.T
"""The inverse rotation, applied when lift3d writes a glTF file."""

Y_UP_SUFFIXES = (".glb", ".gltf")


def file_up_axis(path: str | Path) -> str:
    """The up axis a mesh file is read with by default: ``"y"`` for glTF files, ``"z"`` otherwise."""
    return "y" if Path(path).suffix.lower() in Y_UP_SUFFIXES else "z"


def homogeneous(rotation: np.ndarray) -> np.ndarray:
    """The 4x4 transform of a 3x3 rotation (for ``trimesh.Trimesh.apply_transform``)."""
    out = np.eye(4)
    out[:3, :3] = rotation
    return out
