"""Pixel pairs within a radius and the thick-line paths between them (docs/refinement.md#pathindex).

IRNet links every pixel to the pixels of a half disc of radius r in front of it (the other half
is covered by the reversed pairs) and scores a pair by the strongest boundary on the straight
line between them. `PathIndex` enumerates those directions, their paths and, for a fixed grid,
the flat indices of sources, destinations and path pixels. numpy only.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np


def radius_floor(radius: float) -> int:
    """ceil(r) − 1: the largest offset along one axis (9 for r=10, 4 for r=5;
    docs/refinement.md#pathindex)."""
    return int(math.ceil(radius)) - 1


def search_directions(radius: float) -> list[tuple[int, int]]:
    """Half-disc offsets (dy, dx) in IRNet's enumeration order (docs/refinement.md#pathindex).

    First (0, x) for x = 1..rf, then for y = 1..rf and x = −rf..rf every (y, x) with
    x² + y² < r². The order matters only as the tie order before grouping by path length.
    """
    rf = radius_floor(radius)
    dirs = [(0, x) for x in range(1, rf + 1)]
    for y in range(1, rf + 1):
        dirs += [(y, x) for x in range(-rf, rf + 1) if x * x + y * y < radius * radius]
    return dirs


def direction_path(dy: int, dx: int) -> np.ndarray:
    """The thick line from (0,0) to (dy,dx), destination first: (len, 2) int64
    (docs/refinement.md#pathindex).

    Points of the bounding box (row-major) within distance < 1 of the line, stably sorted by
    decreasing |y| + |x|, so row 0 is the destination and the last row is (0, 0).
    """
    length_sq = dy * dy + dx * dx
    points = [
        (y, x)
        for y in range(min(0, dy), max(0, dy) + 1)
        for x in range(min(0, dx), max(0, dx) + 1)
        if (dy * x - dx * y) ** 2 < length_sq  # distance² = (dy·x − dx·y)² / (dy² + dx²) < 1
    ]
    points.sort(key=lambda p: -abs(p[0]) - abs(p[1]))
    return np.asarray(points, dtype=np.int64).reshape(-1, 2)


def search_paths(radius: float) -> list[np.ndarray]:
    """Paths grouped by length, ascending: one (n_paths_g, len_g, 2) array per group
    (docs/refinement.md#pathindex)."""
    by_length: dict[int, list[np.ndarray]] = {}
    for dy, dx in search_directions(radius):
        path = direction_path(dy, dx)
        by_length.setdefault(len(path), []).append(path)
    return [np.stack(by_length[n]) for n in sorted(by_length)]


class PathIndex:
    """Directions, pairs and path pixels of radius `radius` on a grid of `size` = (Hg, Wg).

    Sources are rows [0, Hg−rf) × cols [rf, Wg−rf), row-major, so every destination
    src + (dy, dx) stays on the grid without wrapping (docs/refinement.md#pathindex).
    """

    def __init__(self, radius: float, size: tuple[int, int]) -> None:
        self.radius = radius
        self.radius_floor = radius_floor(radius)
        self.size = (int(size[0]), int(size[1]))
        if self.radius_floor < 1:
            raise ValueError(f"radius must be > 1, got {radius}")
        if self.size[0] <= self.radius_floor or self.size[1] <= 2 * self.radius_floor:
            raise ValueError(f"grid {self.size} too small for radius {radius}")
        self.paths = search_paths(radius)  # per group (n_paths_g, len_g, 2)
        self.directions = np.concatenate([g[:, 0] for g in self.paths])  # (n_dirs, 2) search_dst

    @property
    def n_directions(self) -> int:
        """Number of half-disc directions (152 for r=10, 34 for r=5)."""
        return len(self.directions)

    @property
    def source_shape(self) -> tuple[int, int]:
        """(Hg − rf, Wg − 2rf): the grid of source pixels."""
        return self.size[0] - self.radius_floor, self.size[1] - 2 * self.radius_floor

    @property
    def n_sources(self) -> int:
        """Number of source pixels (13090 for 128×128 with r=10)."""
        rows, cols = self.source_shape
        return rows * cols

    @cached_property
    def src_indices(self) -> np.ndarray:
        """Flat grid index of every source, row-major: (n_src,) int64."""
        rows, cols = self.source_shape
        grid = np.arange(self.size[0] * self.size[1], dtype=np.int64).reshape(self.size)
        return grid[:rows, self.radius_floor : self.radius_floor + cols].reshape(-1)

    @cached_property
    def dst_indices(self) -> np.ndarray:
        """Flat grid index of each source's destination per direction: (n_dirs, n_src)."""
        width = self.size[1]
        offsets = self.directions[:, 0] * width + self.directions[:, 1]
        return self.src_indices[None, :] + offsets[:, None]

    @cached_property
    def path_indices(self) -> list[np.ndarray]:
        """Flat grid indices of every path pixel: per group (n_paths_g, len_g, n_src) int64.

        Large for training grids (≈ 190 MB for 128×128, r=10), hence computed on first use.
        """
        width = self.size[1]
        out = []
        for group in self.paths:
            offsets = group[..., 0] * width + group[..., 1]  # (n_paths_g, len_g)
            out.append(self.src_indices[None, None, :] + offsets[..., None])
        return out
