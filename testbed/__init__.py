"""testbed: train, evaluate and analyse small language-model grids for scaling-law research."""

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
