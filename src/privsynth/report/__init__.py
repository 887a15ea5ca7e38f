"""Report: sample grids, plots, Markdown and HTML reports."""

from .grid import grid_array, save_grid

__all__ = ["grid_array", "save_grid"]
