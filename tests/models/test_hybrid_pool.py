"""HSPP against hand-computed values and a brute-force loop over cells."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vwe.errors import VweError
from vwe.models.hybrid_pool import hybrid_pool


def grid(h: int, w: int) -> torch.Tensor:
    """One image, one channel, values 0..h·w−1 row-major: value(a, b) = w·a + b."""
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)


def test_divisible_map_by_hand() -> None:
    # 4×4: GAP 7.5; r=1 max 15; r=2 cell maxes 5, 7, 13, 15 → 10; r=4 every pixel → 7.5
    expected = (2 * 7.5 + 15 + 10 + 7.5) / 5
    for cells in ("adaptive", "floor_kernel"):
        assert hybrid_pool(grid(4, 4), cells=cells).item() == pytest.approx(expected)


def test_non_divisible_map_by_hand() -> None:
    # 5×5 adaptive: r=2 cells [0,3) and [2,5) → maxes 12, 14, 22, 24 → 18;
    # r=4 cells end at rows/cols 1, 2, 3, 4 → mean of 5a+b over a, b ∈ {1..4} = 15.
    assert hybrid_pool(grid(5, 5)).item() == pytest.approx((2 * 12 + 24 + 18 + 15) / 5)
    # the authors' floor kernel: r=2 kernel 2 over rows 0-3 → 6, 8, 16, 18 → 12; r=4 kernel 1 → GAP
    assert hybrid_pool(grid(5, 5), cells="floor_kernel").item() == pytest.approx(
        (2 * 12 + 24 + 12 + 12) / 5)


def test_map_smaller_than_level_by_hand() -> None:
    # 3×3, r=4: cells [0,1), [0,2), [1,3), [2,3) → last indices 0, 1, 2, 2 → mean of 3a+b = 5;
    # r=2: cells [0,2), [1,3) → indices 1, 2 → 6; r=1 → 8; GAP 4.
    assert hybrid_pool(grid(3, 3)).item() == pytest.approx((2 * 4 + 8 + 6 + 5) / 5)
    with pytest.raises(VweError, match="smaller than HSPP level 4"):
        hybrid_pool(grid(3, 3), cells="floor_kernel")


def test_one_by_one_map_is_identity() -> None:
    features = torch.tensor([[[[2.5]], [[-1.0]]]])
    assert torch.allclose(hybrid_pool(features), torch.tensor([[2.5, -1.0]]))


def test_floor_kernel_equals_adaptive_when_levels_divide() -> None:
    features = torch.randn(2, 3, 8, 12)
    assert torch.allclose(hybrid_pool(features), hybrid_pool(features, cells="floor_kernel"))


def test_gamma_and_levels_options() -> None:
    # γ = 0, levels (2,): just the mean of 2×2 cell maxima
    assert hybrid_pool(grid(4, 4), gamma=0.0, levels=(2,)).item() == pytest.approx(10.0)
    with pytest.raises(VweError, match="hspp_cells"):
        hybrid_pool(grid(4, 4), cells="exact")


def brute_force(features: torch.Tensor, gamma: float, levels: tuple[int, ...],
                cells: str) -> torch.Tensor:
    """Loop over cells with explicit bounds: the documented cell geometry, a second code path."""
    n, c, h, w = features.shape
    total = gamma * features.mean(dim=(2, 3))
    for r in levels:
        if cells == "adaptive":
            rows = [(i * h // r, math.ceil((i + 1) * h / r)) for i in range(r)]
            cols = [(j * w // r, math.ceil((j + 1) * w / r)) for j in range(r)]
        else:
            kh, kw = h // r, w // r
            rows = [(i * kh, (i + 1) * kh) for i in range(h // kh)]
            cols = [(j * kw, (j + 1) * kw) for j in range(w // kw)]
        maxes = [features[:, :, r0:r1, c0:c1].amax(dim=(2, 3)) for r0, r1 in rows
                 for c0, c1 in cols]
        total = total + torch.stack(maxes).mean(dim=0)
    return total / (gamma + len(levels))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 21), w=st.integers(1, 21), seed=st.integers(0, 2**16),
       cells=st.sampled_from(["adaptive", "floor_kernel"]))
def test_matches_brute_force_for_any_size(h: int, w: int, seed: int, cells: str) -> None:
    features = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    if cells == "floor_kernel" and min(h, w) < 4:
        with pytest.raises(VweError):
            hybrid_pool(features, cells=cells)
        return
    pooled = hybrid_pool(features, cells=cells)
    assert pooled.shape == (2, 3)
    assert torch.allclose(pooled, brute_force(features, 2.0, (1, 2, 4), cells), atol=1e-5)
    low, high = features.amin(dim=(2, 3)), features.amax(dim=(2, 3))
    assert bool(((pooled >= low - 1e-5) & (pooled <= high + 1e-5)).all())


@pytest.mark.parametrize("size", [(6, 6), (9, 9), (5, 7)])
def test_ijcai_code_preset_pools_as_the_authors_code(size) -> None:
    """preset=ijcai-code uses the authors' floor-kernel cells, which differ from exact cells on
    maps whose sides are not multiples of 4 (a loop over max_pool2d as their code calls it)."""
    from vwe.config import load_config

    cells = load_config(None, ["preset=ijcai-code"]).model.hspp_cells
    torch.manual_seed(0)
    features = torch.rand(2, 3, *size)
    levels = []
    for r in (1, 2, 4):
        kernel = (size[0] // r, size[1] // r)
        levels.append(torch.nn.functional.max_pool2d(features, kernel, stride=kernel)
                      .mean(dim=(2, 3), keepdim=True))
    expected = (2.0 * features.mean(dim=(2, 3), keepdim=True) + sum(levels)) / 5.0
    got = hybrid_pool(features, cells=cells)
    assert torch.allclose(got.reshape(expected.shape), expected, atol=1e-6)
    assert not torch.allclose(hybrid_pool(features, cells="adaptive").reshape(expected.shape),
                              expected, atol=1e-3)
    assert load_config(None, ["preset=paper"]).model.hspp_cells == "adaptive"
