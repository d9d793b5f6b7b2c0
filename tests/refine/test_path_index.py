"""PathIndex against hand enumeration and a brute-force geometric construction
(docs/refinement.md#pathindex)."""

import math

import numpy as np
import pytest

from vwe.refine.path_index import PathIndex, direction_path, radius_floor, search_directions


def brute_half_disc(radius: float) -> set[tuple[int, int]]:
    """Every offset with 0 < |d| < r that points down, or right along row 0."""
    n = int(math.ceil(radius))
    return {(y, x) for y in range(0, n + 1) for x in range(-n, n + 1)
            if 0 < x * x + y * y < radius * radius and (y > 0 or x > 0)}


def brute_path(dy: int, dx: int) -> set[tuple[int, int]]:
    """Grid points of the bounding box closer than 1 to the line through (0,0) and (dy,dx)."""
    norm = math.hypot(dy, dx)
    return {(y, x) for y in range(min(0, dy), max(0, dy) + 1)
            for x in range(min(0, dx), max(0, dx) + 1)
            if abs(dy * x - dx * y) / norm < 1 - 1e-12}


def test_radius_two_by_hand():
    assert radius_floor(2) == 1
    assert search_directions(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    index = PathIndex(2, (3, 4))
    assert [len(g[0]) for g in index.paths] == [2, 4]
    np.testing.assert_array_equal(index.directions, [(0, 1), (1, 0), (1, -1), (1, 1)])
    np.testing.assert_array_equal(index.paths[1][0], [(1, -1), (0, -1), (1, 0), (0, 0)])
    np.testing.assert_array_equal(index.paths[1][1], [(1, 1), (0, 1), (1, 0), (0, 0)])
    np.testing.assert_array_equal(index.paths[0][1], [(1, 0), (0, 0)])


@pytest.mark.parametrize("radius", [2, 2.5, 3, 5])
def test_directions_and_paths_brute_force(radius):
    dirs = search_directions(radius)
    assert len(dirs) == len(set(dirs))
    assert set(dirs) == brute_half_disc(radius)
    for dy, dx in dirs:
        path = direction_path(dy, dx)
        assert set(map(tuple, path.tolist())) == brute_path(dy, dx)
        assert tuple(path[0]) == (dy, dx) and tuple(path[-1]) == (0, 0)
        manhattan = np.abs(path).sum(axis=1)
        assert np.all(np.diff(manhattan) <= 0)


@pytest.mark.parametrize("radius, n_dirs, lengths", [
    (10, 152, [*range(2, 17), *range(18, 23)]),
    (5, 34, [*range(2, 9), 10, 11]),
])
def test_official_counts(radius, n_dirs, lengths):
    index = PathIndex(radius, (128, 128))
    assert index.n_directions == n_dirs
    assert [g.shape[1] for g in index.paths] == lengths
    assert sum(g.shape[0] for g in index.paths) == n_dirs
    assert index.n_sources == (13090 if radius == 10 else 124 * 120)


def test_indices_brute_force():
    height, width, radius = 6, 9, 3
    index = PathIndex(radius, (height, width))
    rf = 2
    sources = [(r, c) for r in range(height - rf) for c in range(rf, width - rf)]
    assert index.n_sources == len(sources) == 20
    np.testing.assert_array_equal(index.src_indices, [r * width + c for r, c in sources])
    assert index.dst_indices.shape == (index.n_directions, 20)
    for d, (dy, dx) in enumerate(index.directions.tolist()):
        for s, (r, c) in enumerate(sources):
            assert 0 <= r + dy < height and 0 <= c + dx < width
            assert index.dst_indices[d, s] == (r + dy) * width + c + dx
    d = 0
    for group, group_idx in zip(index.paths, index.path_indices):
        assert group_idx.shape == (group.shape[0], group.shape[1], 20)
        for p, path in enumerate(group.tolist()):
            assert group_idx[p, 0].tolist() == index.dst_indices[d].tolist()
            for k, (py, px) in enumerate(path):
                expected = [(r + py) * width + c + px for r, c in sources]
                assert group_idx[p, k].tolist() == expected
            d += 1


def test_too_small_grid_rejected():
    with pytest.raises(ValueError):
        PathIndex(5, (4, 20))
