"""Report: sample grids, plots, nearest-neighbour gallery, Markdown and HTML reports."""

from .grid import grid_array, grid_png, save_grid

__all__ = ["grid_array", "grid_png", "save_grid"]
