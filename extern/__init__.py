"""Adapters for checkpoints that are not in diffusers layout (run from the repository root)."""
