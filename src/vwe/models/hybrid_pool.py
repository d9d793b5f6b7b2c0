"""Hybrid spatial pyramid pooling, HSPP (docs/method.md#hspp).

f = (γ·GAP(F) + Σ_{r ∈ levels} mean over the r×r cells of the cell max) / (γ + |levels|).

Two cell geometries:
* ``adaptive`` (every preset): PyTorch's adaptive max pooling to r×r. Cell i of a side of
  length h spans [⌊i·h/r⌋, ⌈(i+1)·h/r⌉). When r divides h these are exact, disjoint r×r cells;
  otherwise neighbouring cells share one row/column, and every row is covered. When h < r the
  cells repeat rows (a 1×1 map gives r² copies of its value), so the level equals the mean of
  maxima over those repeated cells and works for any map size.
* ``floor_kernel`` (the authors' pooling): max-pool with kernel (⌊h/r⌋, ⌊w/r⌋), stride = kernel,
  no padding, then the mean of the cells. Equal to ``adaptive`` when r divides h and w; drops
  the last rows/columns or makes more than r cells otherwise; a side < r is a `VweError`
  (their code crashes there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from vwe.errors import VweError

CELL_MODES = ("adaptive", "floor_kernel")


def _level_max(features: Tensor, r: int, cells: str) -> Tensor:
    """Mean over the cells of level r of each cell's max: (N, C)."""
    h, w = features.shape[-2:]
    if cells == "adaptive":
        pooled = F.adaptive_max_pool2d(features, (r, r))
    else:
        if h < r or w < r:
            raise VweError(f"feature map {h}x{w} is smaller than HSPP level {r} with "
                           "model.hspp_cells=floor_kernel (the authors' pooling); use larger "
                           "images or model.hspp_cells=adaptive")
        kernel = (h // r, w // r)
        pooled = F.max_pool2d(features, kernel_size=kernel, stride=kernel, padding=0)
    return pooled.mean(dim=(-2, -1))


def hybrid_pool(features: Tensor, gamma: float = 2.0, levels: Sequence[int] = (1, 2, 4),
                cells: str = "adaptive") -> Tensor:
    """HSPP of (N, C, h, w) features into (N, C): GAP weighted γ plus local-max pyramid levels."""
    if cells not in CELL_MODES:
        raise VweError(f"unknown model.hspp_cells '{cells}'; choose one of {', '.join(CELL_MODES)}")
    if any(r < 1 for r in levels):
        raise VweError(f"model.hspp_levels must be positive integers, got {list(levels)}")
    if gamma + len(levels) <= 0:
        raise VweError("model.hspp_gamma + the number of levels must be positive")
    pooled = gamma * features.mean(dim=(-2, -1))  # γ·f_gap
    for r in levels:
        pooled = pooled + _level_max(features, int(r), cells)  # f_r_max
    return pooled / (gamma + len(levels))
