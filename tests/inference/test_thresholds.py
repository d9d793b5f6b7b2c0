"""`auto` thresholds: Otsu's rule against a brute-force between-class variance, and constructed
score maps whose right threshold is known (the stages that record them: test_eval_cam)."""

import numpy as np
import pytest

from vwe.data.io import save_npz
from vwe.inference.thresholds import (
    auto_background_score,
    best_on_masks,
    calibrated_background_score,
    calibration_names,
    cam_histograms,
    cam_score_histogram,
    class_background_scores,
    otsu_threshold,
    quantile_below,
    score_histogram,
)


def brute_force_otsu(values: np.ndarray, candidates: np.ndarray) -> float:
    """The candidate that maximises w0·w1·(μ0 − μ1)² over the raw values."""
    best, best_t = -1.0, None
    for t in candidates:
        low, high = values[values < t], values[values >= t]
        if low.size == 0 or high.size == 0:
            continue
        w0, w1 = low.size / values.size, high.size / values.size
        between = w0 * w1 * (low.mean() - high.mean()) ** 2
        if between > best:
            best, best_t = between, t
    return float(best_t)


def test_otsu_equals_the_brute_force_rule_on_binned_values():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.25, 0.08, 4000), rng.normal(0.7, 0.1, 1500)])
    bins = 50
    binned = (np.clip(np.floor(np.clip(values, 0, 1) * bins), 0, bins - 1) + 0.5) / bins
    histogram = np.bincount((binned * bins).astype(int), minlength=bins)
    assert otsu_threshold(histogram) == pytest.approx(
        brute_force_otsu(binned, np.arange(1, bins) / bins))


def test_constructed_score_maps_give_the_threshold_that_separates_them(tmp_path):
    """Objects score 0.75 ± 0.03, background 0.2 ± 0.03: any threshold in the gap labels every
    pixel right, and the rule must land in it."""
    rng = np.random.default_rng(1)
    paths = []
    for index in range(4):
        truth = np.zeros((40, 50), bool)
        truth[5 + index:25, 10:40] = True
        scores = np.where(truth, rng.normal(0.75, 0.03, truth.shape),
                          rng.normal(0.2, 0.03, truth.shape)).clip(0, 1).astype(np.float32)
        path = tmp_path / f"img{index}.npz"
        save_npz(path, keys=np.array([index % 2]), high_res=scores[None])
        paths.append((path, truth, scores))
    auto = auto_background_score([p for p, _, _ in paths])
    assert 0.3 < auto["bkg_score"] < 0.65
    for _, truth, scores in paths:
        assert ((scores > auto["bkg_score"]) == truth).all()
    assert auto["fg_thres"] == pytest.approx(auto["bkg_score"] + 0.15)
    # the 80 % quantile of the background's N(0.2, 0.03) scores: 0.2 + 0.84·0.03
    assert auto["bg_thres"] == pytest.approx(0.2 + 0.8416 * 0.03, abs=0.005)


def test_quantile_below_equals_numpy_on_the_scores_below_the_threshold():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.beta(1, 8, 20000), rng.uniform(0.3, 1, 5000)])
    histogram = np.histogram(values, bins=200, range=(0, 1))[0]
    for quantile in (0.5, 0.8, 0.9):
        expected = np.quantile(values[values < 0.3], quantile)
        assert quantile_below(histogram, 0.3, quantile) == pytest.approx(expected, abs=0.004)
    assert quantile_below(np.zeros(200), 0.3, 0.8) == 0.3  # nothing below: the threshold


def test_ir_background_falls_with_an_unlit_background_and_rises_with_a_lit_one(tmp_path):
    """The same objects (0.5–1) over a dark background (|N(0, 0.03)|, drawings) and over a lit
    one (N(0.3, 0.05), photographs): fg follows the background score, bg follows the
    background's own scores (about their mean + 1σ), not a fixed margin below the threshold."""
    rng = np.random.default_rng(5)
    chosen = {}
    for name, background in (("dark", lambda shape: np.abs(rng.normal(0, 0.03, shape))),
                             ("lit", lambda shape: rng.normal(0.3, 0.05, shape))):
        paths = []
        for index in range(3):
            truth = np.zeros((40, 50), bool)
            truth[5:25, 10 + index:40] = True
            scores = np.where(truth, rng.uniform(0.5, 1.0, truth.shape), background(truth.shape))
            path = tmp_path / f"{name}{index}.npz"
            save_npz(path, keys=np.array([0]), high_res=scores.clip(0, 1).astype(np.float32)[None])
            paths.append(path)
        chosen[name] = auto_background_score(paths)
    assert chosen["dark"]["bg_thres"] == 0.05  # 0.8 quantile of |N(0, 0.03)| ≈ 0.04: the floor
    assert chosen["lit"]["bg_thres"] == pytest.approx(0.3 + 0.8416 * 0.05, abs=0.01)
    for auto in chosen.values():
        assert auto["bg_thres"] < auto["bkg_score"] < auto["fg_thres"]
        assert "80 % quantile of the scores below bkg_score" in auto["ir_rule"]  # the evidence


def test_calibration_finds_the_threshold_the_masks_want_where_otsu_cannot(tmp_path):
    """Objects at 0.62 ± 0.02 over a background that is mostly 0.1 but 0.5 ± 0.02 near them
    (a halo, as CAMs have): Otsu splits 0.1 from the rest, the masks want 0.5 < t < 0.62."""
    rng = np.random.default_rng(2)
    samples, paths = [], []
    for index in range(3):
        truth = np.zeros((30, 40), bool)
        truth[8:22, 10 + index:30] = True
        halo = np.zeros_like(truth)
        halo[4:26, 6:36] = True
        scores = np.where(truth, rng.normal(0.62, 0.02, truth.shape),
                          np.where(halo, rng.normal(0.5, 0.02, truth.shape), 0.1))
        scores = scores.clip(0, 1).astype(np.float32)[None]
        mask = np.where(truth, 1 + index % 2, 0).astype(np.uint8)
        keys = np.array([index % 2])
        samples.append((mask, scores, keys))
        path = tmp_path / f"img{index}.npz"
        save_npz(path, keys=keys, high_res=scores)
        paths.append(path)
    chosen = best_on_masks(samples, num_classes=3)
    assert 0.5 < chosen["threshold"] < 0.62 and chosen["miou_on_masks"] > 0.99
    assert chosen["images"] == 3 and "calibration" in chosen["rule"]
    calibrated = calibrated_background_score(samples, num_classes=3)
    assert calibrated["bkg_score"] == chosen["threshold"]
    # bg: the 80 % quantile of those images' scores below t (the 0.1 plain, then the halo)
    below = np.concatenate([maps.ravel() for _, maps, _ in samples])
    below = below[below < chosen["threshold"]]
    assert calibrated["bg_thres"] == pytest.approx(np.quantile(below, 0.8), abs=0.006)
    assert auto_background_score(paths)["bkg_score"] < 0.45  # Otsu: the halo counts as object
    with pytest.raises(ValueError, match="no labelled image"):
        best_on_masks([], num_classes=3)


def test_calibration_only_where_some_but_not_all_images_have_masks():
    assert calibration_names(["a"], ["a", "b", "c"]) == ["a"]
    assert calibration_names([], ["a", "b"]) == []  # no masks: Otsu
    assert calibration_names(["a", "b"], ["a", "b"]) == []  # an evaluation set: Otsu


def test_auto_cuts_between_a_narrow_background_and_wide_objects_where_plain_otsu_cuts_objects(
        tmp_path):
    """Background at 0.05 ± 0.02 on 70 % of the pixels, objects spread evenly over 0.3–1 (as
    trained CAMs on drawings are): every threshold in the gap (~0.12, 0.3) labels each pixel
    right. Plain Otsu cuts inside the objects; the rule on score^0.7 lands in the gap."""
    rng = np.random.default_rng(4)
    paths, maps = [], []
    for index in range(4):
        truth = np.zeros((40, 50), bool)
        truth[4 + index:16 + index, 5:45] = True  # 12 rows of 40: 30 % of the pixels
        scores = np.where(truth, rng.uniform(0.3, 1.0, truth.shape),
                          np.abs(rng.normal(0.05, 0.02, truth.shape))).astype(np.float32)
        path = tmp_path / f"img{index}.npz"
        save_npz(path, keys=np.array([0]), high_res=scores[None])
        paths.append((path, truth, scores))
        maps.append(scores[None])
    assert otsu_threshold(score_histogram(maps)) > 0.3
    auto = auto_background_score([path for path, _, _ in paths])
    assert 0.1 < auto["bkg_score"] < 0.3
    for _, truth, scores in paths:
        assert ((scores > auto["bkg_score"]) == truth).all()
    assert "score^0.7" in auto["rule"]


def test_otsu_with_a_power_is_otsu_on_the_transformed_values():
    """Otsu on score^p over a histogram equals plain Otsu on the transformed bin centres."""
    rng = np.random.default_rng(5)
    bins = 50
    histogram = rng.integers(0, 100, bins)
    centres = ((np.arange(bins) + 0.5) / bins) ** 0.7
    values = np.repeat(centres, histogram)
    edges = (np.arange(1, bins) / bins) ** 0.7
    expected = brute_force_otsu(values, edges) ** (1 / 0.7)
    assert otsu_threshold(histogram, 0.7) == pytest.approx(expected)


def test_a_changed_auto_rule_makes_auto_stages_stale_and_leaves_fixed_ones(
        monkeypatch, tiny_dataset, tmp_path):
    """The records of the stages with an `auto` threshold carry the rule (revision and
    constants): another rule changes them, so a finished stage reruns; fixed thresholds carry
    nothing, and their records stay as they were."""
    import vwe.inference.thresholds as thresholds
    from vwe.config.schema import (
        Config,
        DataConfig,
        EvalCamConfig,
        IrLabelConfig,
        PseudoLabelConfig,
    )
    from vwe.stage_records import stage_record

    where = {"data": DataConfig(root=str(tiny_dataset)), "run_dir": str(tmp_path)}
    auto = Config(eval_cam=EvalCamConfig(bkg_score="auto"),
                  ir_labels=IrLabelConfig(fg_thres="auto", bg_thres="auto"),
                  pseudo_labels=PseudoLabelConfig(scale="plane", bg_thres="auto"), **where)
    fixed = Config(**where)
    stages = ("eval_cam", "ir_labels", "pseudo_labels")
    for stage in stages:
        assert "auto_rule" not in stage_record(fixed, stage).inputs
    now = {stage: stage_record(auto, stage).inputs["auto_rule"] for stage in stages}
    assert len(set(now.values())) == 1 and "0.8 quantile" in now["eval_cam"]
    for name, value in (("BG_QUANTILE", 0.75), ("SCORE_POWER", 0.6),
                        ("RULE_REVISION", thresholds.RULE_REVISION + 1)):
        with monkeypatch.context() as patch:
            patch.setattr(thresholds, name, value)
            for stage in stages:
                assert stage_record(auto, stage).inputs["auto_rule"] != now[stage], (name, stage)


def test_class_background_scores_scale_the_shared_one_by_the_class_means(tmp_path):
    """t_k = t · (m_k / m)^0.5 with m_k a class's mean score over the images tagged with it and
    m the pooled mean; a class never tagged keeps t. Two images, two-bin histograms by hand."""
    save_npz(tmp_path / "a.npz", keys=np.array([0]),
             high_res=np.array([[[0.1, 0.1], [0.1, 0.9]]], np.float32))
    save_npz(tmp_path / "b.npz", keys=np.array([0, 1]),
             high_res=np.array([[[0.9, 0.9], [0.9, 0.9]], [[0.1, 0.1], [0.1, 0.1]]], np.float32))
    files = sorted(tmp_path.glob("*.npz"))
    highest, histograms = cam_histograms(files, 3, bins=2)
    np.testing.assert_array_equal(histograms, [[3, 5], [4, 0], [0, 0]])
    # the highest score per pixel: a 0.1 ×3, 0.9; b 0.9 ×4 (max over its two classes)
    np.testing.assert_array_equal(highest, [3, 5])
    np.testing.assert_array_equal(highest, cam_score_histogram(files, bins=2))
    # bin centres 0.25 / 0.75: class 0 mean (3·0.25 + 5·0.75) / 8 = 0.5625, class 1 0.25,
    # pooled (4.5 + 1) / 12 = 0.458333
    scores = class_background_scores(0.4, histograms)
    pooled = 5.5 / 12
    np.testing.assert_allclose(scores, [0.4 * (0.5625 / pooled) ** 0.5,
                                        0.4 * (0.25 / pooled) ** 0.5, 0.4])
    np.testing.assert_allclose(class_background_scores(0.4, histograms, power=0), 0.4)
    with pytest.raises(ValueError, match="no CAM scores"):
        class_background_scores(0.4, np.zeros((2, 4)))
