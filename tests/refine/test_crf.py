"""Dense CRF wrappers on flat-colour images with an obvious answer (docs/refinement.md#ir-labels,
docs/segmentation.md#dense-crf)."""

import numpy as np
import pytest

from vwe.refine.crf import crf_inference_label, crf_inference_labels, crf_inference_prob


def square_image(size: int = 32, lo: int = 8, hi: int = 24) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    image[lo:hi, lo:hi] = 255
    return image


def test_label_crf_snaps_to_colour_edges():
    labels = np.zeros((32, 32), np.int64)
    labels[9:25, 9:25] = 1  # the label square is one pixel off the white square
    expected = np.zeros((32, 32), np.int64)
    expected[8:24, 8:24] = 1
    np.testing.assert_array_equal(crf_inference_label(square_image(), labels, n_labels=2),
                                  expected)


def test_label_crf_keeps_consistent_labels_and_checks_inputs():
    labels = np.zeros((32, 32), np.int64)
    labels[8:24, 8:24] = 2  # label 1 unused: n_labels counts all of 0..n−1
    np.testing.assert_array_equal(crf_inference_label(square_image(), labels, 3), labels)
    with pytest.raises(ValueError):
        crf_inference_label(square_image().astype(np.float32), labels, 3)
    with pytest.raises(ValueError):
        crf_inference_label(square_image(), labels, 2)


def test_label_maps_sharing_one_crf_get_the_q_of_a_crf_each():
    """Two label maps of one image through one CRF (pairwise terms built once) give exactly
    what a fresh pydensecrf CRF per map gives."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    maps = [rng.integers(0, 3, (40, 52)), (rng.random((40, 52)) < 0.4).astype(np.int64) * 2]
    want = []
    for labels in maps:
        crf = dcrf.DenseCRF2D(52, 40, 3)
        crf.setUnaryEnergy(unary_from_labels(labels, 3, gt_prob=0.7, zero_unsure=False))
        crf.addPairwiseGaussian(sxy=3, compat=3)
        crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=image, compat=10)
        want.append(np.argmax(np.asarray(crf.inference(10)).reshape(3, 40, 52), axis=0))
    got = crf_inference_labels(image, maps, 3)
    assert len(got) == 2 and not np.array_equal(want[0], want[1])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="labels must be"):
        crf_inference_labels(image, [maps[0], maps[0][:-1]], 3)


def test_prob_crf_cleans_noise_within_flat_regions():
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, 16:] = 200
    right = np.broadcast_to(np.arange(32) >= 16, (24, 32))
    p_right = np.where(right, 0.6, 0.4)
    flipped = np.random.default_rng(0).random((24, 32)) < 0.2
    p_right = np.where(flipped, 1 - p_right, p_right)
    probs = np.stack([1 - p_right, p_right]).astype(np.float32)
    assert (probs.argmax(0) != right).sum() > 100
    q = crf_inference_prob(np.asfortranarray(image), probs)  # not C-contiguous: copied
    assert q.shape == (2, 24, 32) and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(q.argmax(0), right)
