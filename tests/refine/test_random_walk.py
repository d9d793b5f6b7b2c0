"""Random walk vs a float64 brute-force reference, its properties, and the label helpers
(docs/refinement.md#random-walk)."""

import math

import numpy as np
import pytest
import torch

from vwe.refine.random_walk import (
    propagated_to_label,
    random_walk,
    sparse_step_matrix,
    upsample_walk,
    walk_pairs,
    walk_scipy,
    walk_to_labels,
    walk_torch,
    walked_cam_scores,
)


def line_pixels(p: tuple[int, int], q: tuple[int, int]) -> list[tuple[int, int]]:
    """Pixels of the box spanned by p and q closer than 1 to the line through them."""
    dy, dx = q[0] - p[0], q[1] - p[1]
    norm = math.hypot(dy, dx)
    return [(y, x) for y in range(min(p[0], q[0]), max(p[0], q[0]) + 1)
            for x in range(min(p[1], q[1]), max(p[1], q[1]) + 1)
            if abs(dy * (x - p[1]) - dx * (y - p[0])) / norm < 1 - 1e-12]


def brute_affinity(edge: np.ndarray, radius: float) -> np.ndarray:
    """Dense A (hw, hw) float64: 1 − max edge on the line for pairs closer than r, diag 1."""
    h, w = edge.shape
    pixels = [(y, x) for y in range(h) for x in range(w)]
    affinity = np.eye(h * w)
    for i, p in enumerate(pixels):
        for j, q in enumerate(pixels):
            if i != j and (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 < radius**2:
                affinity[i, j] = 1 - max(edge[y, x] for y, x in line_pixels(p, q))
    return affinity


def brute_walk(cams, edge, beta, exp_times, radius):
    """x · T^(2^n) in float64 with T = A^β / column sums."""
    scaled = brute_affinity(edge.astype(np.float64), radius) ** beta
    trans = scaled / scaled.sum(axis=0, keepdims=True)
    x = (cams * (1 - edge)).reshape(len(cams), -1).astype(np.float64)
    out = x @ np.linalg.matrix_power(trans, 2**exp_times)
    return out.reshape(cams.shape)


def random_inputs(k, h, w, seed):
    rng = np.random.default_rng(seed)
    return rng.random((k, h, w), dtype=np.float32), (rng.random((h, w)) ** 2).astype(np.float32)


def test_pairs_by_hand():
    edge = np.zeros((3, 3), np.float32)
    edge[1, 1], edge[0, 0] = 0.5, 0.2
    src, dst, aff = walk_pairs(edge, radius=2)  # radius 2: the 8-neighbourhood
    pairs = {frozenset((int(s), int(d))): float(a) for s, d, a in zip(src, dst, aff)}
    assert len(pairs) == len(src) == 20  # 6 horizontal + 6 vertical + 8 diagonal
    assert pairs[frozenset((0, 1))] == pytest.approx(0.8)  # (0,0)-(0,1)
    assert pairs[frozenset((1, 2))] == pytest.approx(1.0)  # (0,1)-(0,2)
    assert pairs[frozenset((0, 4))] == pytest.approx(0.5)  # (0,0)-(1,1)
    assert pairs[frozenset((1, 3))] == pytest.approx(0.5)  # (0,1)-(1,0): thick line crosses both
    assert pairs[frozenset((7, 8))] == pytest.approx(1.0)  # (2,1)-(2,2)


@pytest.mark.parametrize("k, h, w, radius, exp_times", [
    (1, 4, 5, 2, 3), (2, 6, 5, 3, 8), (3, 5, 8, 5, 8), (2, 7, 7, 5, 4),
])
def test_sparse_and_dense_match_brute_force(k, h, w, radius, exp_times):
    cams, edge = random_inputs(k, h, w, seed=h * w)
    expected = brute_walk(cams, edge, 10, exp_times, radius)
    # sparse works in float64; dense is IRNet's float32 squaring (≈ 1e-4 relative error)
    for method, rtol in (("sparse", 1e-6), ("dense", 1e-3)):
        out = random_walk(cams, edge, beta=10, exp_times=exp_times, radius=radius, method=method)
        assert out.dtype == np.float32 and out.shape == (k, h, w)
        np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("k, h, w", [(1, 9, 14), (2, 16, 11), (3, 20, 31)])
def test_sparse_equals_dense(k, h, w):
    cams, edge = random_inputs(k, h, w, seed=k)
    dense = random_walk(cams, edge, method="dense")
    sparse = random_walk(torch.from_numpy(cams), torch.from_numpy(edge), method="sparse")
    np.testing.assert_allclose(sparse, dense, rtol=1e-3, atol=1e-4 * dense.max())
    size = (4 * h - 1, 4 * w - 2)
    labels_sparse = propagated_to_label(sparse, np.arange(k), size)
    labels_dense = propagated_to_label(dense, np.arange(k), size)
    # equal wherever the decision is not a near-tie at float32 precision
    scores = np.sort(np.concatenate([np.full((1, *size), 0.25), upsample_walk(dense, size)]), 0)
    clear = scores[-1] - scores[-2] > 3e-4
    np.testing.assert_array_equal(labels_sparse[clear], labels_dense[clear])
    assert clear.mean() > 0.9


def test_constant_map_is_preserved():
    # T's columns sum to 1, so a constant x = cams ⊙ (1 − edge) stays constant (any edge map).
    _, edge = random_inputs(1, 13, 17, seed=3)
    edge *= 0.9
    cams = np.stack([0.7 / (1 - edge), 0.2 / (1 - edge)]).astype(np.float32)
    out = random_walk(cams, edge)
    np.testing.assert_allclose(out[0], 0.7, rtol=1e-6)
    np.testing.assert_allclose(out[1], 0.2, rtol=1e-6)


def test_closed_boundary_blocks_the_walk():
    edge = np.zeros((10, 15), np.float32)
    edge[:, 7] = 1.0  # a wall: every line across it passes through a wall pixel
    cams = np.zeros((1, 10, 15), np.float32)
    cams[0, :, :7] = np.random.default_rng(0).random((10, 7))
    out = random_walk(cams, edge)
    assert np.all(out[0, :, 7:] == 0)
    assert out[0, :, :7].min() > 0


def test_zero_exp_times_is_one_step_and_errors():
    cams, edge = random_inputs(2, 6, 6, seed=0)
    np.testing.assert_allclose(random_walk(cams, edge, exp_times=0),
                               brute_walk(cams, edge, 10, 0, 5), rtol=1e-5, atol=1e-6)
    assert random_walk(cams[:0], edge).shape == (0, 6, 6)
    with pytest.raises(ValueError):
        random_walk(cams, edge, method="power")
    with pytest.raises(ValueError):
        random_walk(cams, edge + 1)
    with pytest.raises(ValueError):
        random_walk(cams, edge[:5])


def test_torch_walk_equals_scipy_walk():
    cams, edge = random_inputs(2, 11, 13, seed=2)
    step = sparse_step_matrix(edge, 10, 5)
    x = (cams * (1 - edge)).reshape(2, -1).astype(np.float64)
    np.testing.assert_allclose(walk_torch(x, step, 256, torch.device("cpu")),
                               walk_scipy(x, step, 256), rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sparse_on_gpu_equals_cpu():
    cams, edge = random_inputs(3, 30, 40, seed=1)
    gpu = random_walk(torch.from_numpy(cams).cuda(), edge)
    np.testing.assert_allclose(gpu, random_walk(cams, edge), rtol=1e-4, atol=1e-6)


def test_upsample_walk_by_hand():
    rw = np.zeros((2, 1, 2), np.float32)
    rw[0, 0] = [0, 4]
    rw[1, 0] = [2, 2]
    up = upsample_walk(rw, (3, 7))
    assert up.shape == (2, 3, 7)
    # bilinear ×4, align_corners=False: source x = (i + 0.5)/4 − 0.5, clamped; / global max 4
    row = np.array([0, 0, 0.5, 1.5, 2.5, 3.5, 4]) / 4
    np.testing.assert_allclose(up[0], np.tile(row, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(up[1], 0.5, atol=1e-6)  # global, not per-class, max
    np.testing.assert_array_equal(upsample_walk(np.zeros((1, 2, 2)), (8, 8)), 0)


def test_walk_to_labels_by_hand():
    rw_up = np.array([[[0.1, 0.6, 0.3, 0.9]], [[0.2, 0.5, 0.4, 0.95]]], np.float32)
    labels = walk_to_labels(rw_up, np.array([2, 7]), bg_thres=0.25)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [[0, 3, 8, 8]])
    np.testing.assert_array_equal(walk_to_labels(rw_up, np.array([2, 7]), 0.55), [[0, 3, 0, 8]])
    np.testing.assert_array_equal(walk_to_labels(np.zeros((0, 2, 2)), np.array([])), 0)


def test_walk_to_labels_with_one_threshold_per_map():
    """Each map against its own threshold: a pixel is the map with the highest score/threshold,
    background where none reaches 1; equal thresholds give the shared plane's labels."""
    rw_up = np.array([[[0.1, 0.6, 0.3, 0.9]], [[0.2, 0.5, 0.4, 0.95]]], np.float32)
    keys = np.array([2, 7])
    # ratios map 0: 0.5 3.0 1.5 4.5; map 1: 0.4 1.0 0.8 1.9 -> [bg, 3, 3, 3]
    np.testing.assert_array_equal(walk_to_labels(rw_up, keys, np.array([0.2, 0.5])),
                                  [[0, 3, 3, 3]])
    # ratios map 0: 0.25 1.5 0.75 2.25; map 1: 0.5 1.25 1.0 2.375 -> [bg, 3, bg (tie), 8]
    np.testing.assert_array_equal(walk_to_labels(rw_up, keys, np.array([0.4, 0.4])),
                                  [[0, 3, 0, 8]])
    np.testing.assert_array_equal(walk_to_labels(rw_up, keys, np.array([0.25, 0.25])),
                                  walk_to_labels(rw_up, keys, 0.25))
    with pytest.raises(ValueError, match="1 thresholds for 2 maps"):
        walk_to_labels(rw_up, keys, np.array([0.3]))


def test_walked_cam_scores_are_on_the_cam_scale():
    # Walking cams and a plane of ones together: a constant CAM c reads back as c everywhere,
    # whatever the boundaries, while IRNet's walk of it is damped by (1 - edge) near them.
    _, edge = random_inputs(1, 9, 11, seed=4)
    edge *= 0.8
    cams = np.stack([np.full((9, 11), 0.6), np.full((9, 11), 0.3),
                     np.ones((9, 11))]).astype(np.float32)
    walked = random_walk(cams, edge)
    scores = walked_cam_scores(walked[:2], walked[2:], (33, 41))
    assert scores.shape == (2, 33, 41)
    np.testing.assert_allclose(scores[0], 0.6, rtol=1e-5)
    np.testing.assert_allclose(scores[1], 0.3, rtol=1e-5)
    assert walked[0].min() < 0.6 * 0.95  # the raw walk is not on the CAM scale


def test_walked_cam_scores_by_hand():
    rw = np.array([[[0.1, 0.4]]], np.float32)
    plane = np.array([[[0.5, 0.8]]], np.float32)
    scores = walked_cam_scores(rw, plane, (2, 7))
    # both ×4 bilinear (source x = (i + 0.5)/4 − 0.5, clamped), then divided pixel by pixel
    weight = np.clip((np.arange(7) + 0.5) / 4 - 0.5, 0, 1)
    want = (0.1 + 0.3 * weight) / (0.5 + 0.3 * weight)
    np.testing.assert_allclose(scores[0], np.tile(want, (2, 1)), rtol=1e-6)
    zero = walked_cam_scores(np.ones((1, 1, 1)), np.zeros((1, 1, 1)), (4, 4))
    assert np.isfinite(zero).all()
    with pytest.raises(ValueError):
        walked_cam_scores(rw, plane[:, :, :1], (2, 7))
