"""pseudo-labels + eval-labels on the tiny dataset: the stage equals the library functions, the
eval-labels sweep on stored walks equals making and scoring the labels at each threshold, resume
recomputes only what is missing, and bad inputs are one-line errors with nothing written."""

import json

import numpy as np
import pytest
import torch

from vwe.cli import main
from vwe.data.io import load_npz, read_image, read_label_png, save_label_png, save_npz
from vwe.data.transforms import normalize
from vwe.engine.checkpoint import load_checkpoint, save_checkpoint
from vwe.models.irn import IRNet, edge_map
from vwe.refine import random_walk
from vwe.refine.random_walk import propagated_to_label

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def train_names(root):
    return (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()


def hand_miou(root, label_dir, names, num_classes=9):
    """Confusion by a plain loop over images; 255 in a label → background; mIoU over GT classes."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for name in names:
        gt = read_label_png(root / "SegmentationClassAug" / f"{name}.png").astype(int)
        pred = read_label_png(label_dir / f"{name}.png").astype(int)
        pred[pred == 255] = 0
        for g, p in zip(gt[gt != 255], pred[gt != 255]):
            conf[g, p] += 1
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float(np.mean(inter[present] / union[present]))


def error_lines(err):
    """stderr lines other than progress bars (which redraw with carriage returns)."""
    return [line for line in err.split("\n") if "\r" not in line and line.strip()]


def eval_json(run_dir):
    return json.loads((run_dir / "eval_labels.json").read_text())


def test_stage_equals_library_and_eval(tiny_dataset, run_copy, irn_run, refine_overrides):
    run_dir = run_copy("train_irn", "ir_labels", source=irn_run)
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, run_dir)]) == 0
    names = train_names(tiny_dataset)
    assert sorted(p.stem for p in (run_dir / "pseudo_labels").glob("*.png")) == sorted(names)
    model = IRNet("resnet_tiny")
    model.load_state_dict(load_checkpoint(run_dir / "train_irn" / "final.pt")["model"])
    model.eval()
    for name in names[:3]:
        image = read_image(tiny_dataset / "JPEGImages" / f"{name}.jpg")
        x = normalize(image)
        pair = torch.from_numpy(np.stack([x, x[:, ::-1]]).transpose(0, 3, 1, 2).copy())
        cams = load_npz(run_dir / "cams" / f"{name}.npz")
        rw = random_walk(cams["cam"], edge_map(model, pair).numpy(), beta=10, exp_times=8,
                         radius=5)
        stored = load_npz(run_dir / "walks" / f"{name}.npz")
        assert stored["rw"].dtype == np.float16
        np.testing.assert_array_equal(stored["keys"], cams["keys"])
        np.testing.assert_allclose(stored["rw"], rw, rtol=2e-3, atol=1e-6)
        expected = propagated_to_label(stored["rw"].astype(np.float32), cams["keys"],
                                       image.shape[:2], 0.25)
        label = read_label_png(run_dir / "pseudo_labels" / f"{name}.png")
        np.testing.assert_array_equal(label, expected)
        assert 255 not in label

    assert main(["eval-labels", *refine_overrides(tiny_dataset, run_dir)]) == 0
    report = eval_json(run_dir)
    assert report["scores"]["miou"] == pytest.approx(
        hand_miou(tiny_dataset, run_dir / "pseudo_labels", names), abs=1e-12)
    assert report["sweep"] is not None and len(report["sweep"]["thresholds"]) == 61
    assert main(["eval-labels", *refine_overrides(
        tiny_dataset, run_dir, f"eval_labels.label_dir={run_dir / 'ir_labels'}"),
        "--no-sweep"]) == 0
    report = eval_json(run_dir)
    assert report["sweep"] is None
    assert report["scores"]["miou"] == pytest.approx(
        hand_miou(tiny_dataset, run_dir / "ir_labels", names), abs=1e-12)


def test_dense_walk_gives_the_same_walk(tiny_dataset, run_copy, irn_run, refine_overrides):
    sparse, dense = run_copy("train_irn", source=irn_run), run_copy("train_irn", source=irn_run)
    extra = ("pseudo_labels.walk_dtype=float32",)
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, sparse, *extra)]) == 0
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, dense, *extra,
                                                    "pseudo_labels.method=dense")]) == 0
    for name in train_names(tiny_dataset):
        np.testing.assert_allclose(load_npz(dense / "walks" / f"{name}.npz")["rw"],
                                   load_npz(sparse / "walks" / f"{name}.npz")["rw"],
                                   rtol=1e-3, atol=1e-5)


def test_sweep_equals_labels_made_at_each_threshold(tiny_dataset, run_copy, irn_run,
                                                     refine_overrides):
    run_dir = run_copy("train_irn", source=irn_run)
    sweep = ("eval_labels.sweep_start=0.1", "eval_labels.sweep_stop=0.4",
             "eval_labels.sweep_step=0.15")
    walk = "pseudo_labels.exp_times=2"  # a short walk: on ~20×20 grids T^256 is flat
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, run_dir, walk)]) == 0
    assert main(["eval-labels", *refine_overrides(tiny_dataset, run_dir, walk, *sweep)]) == 0
    curve = eval_json(run_dir)["sweep"]
    assert curve["thresholds"] == [0.1, 0.25, 0.4]
    checkpoint = f"pseudo_labels.checkpoint={run_dir / 'train_irn' / 'final.pt'}"
    for threshold, miou in zip(curve["thresholds"], curve["miou"]):
        direct = run_copy()  # CAMs only: the walk is recomputed from scratch
        args = refine_overrides(tiny_dataset, direct, checkpoint, walk,
                                f"pseudo_labels.bg_thres={threshold}")
        assert main(["pseudo-labels", *args]) == 0
        assert main(["eval-labels", *args, "--no-sweep"]) == 0
        scores = eval_json(direct)["scores"]
        assert scores["miou"] == miou
        if threshold == curve["best_threshold"]:
            assert scores["confusion"] == curve["best"]["confusion"]
    assert len(set(curve["miou"])) > 1  # the thresholds do change the labels


def test_resume_recomputes_only_missing(tiny_dataset, run_copy, irn_run, refine_overrides):
    run_dir = run_copy("train_irn", source=irn_run)
    args = refine_overrides(tiny_dataset, run_dir)
    assert main(["pseudo-labels", *args]) == 0
    out = run_dir / "pseudo_labels"
    victim = out / f"{train_names(tiny_dataset)[3]}.png"
    before = victim.read_bytes()
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert main(["pseudo-labels", *args]) == 0
    assert victim.read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p != victim} == stamps


def edit_cam(run_dir, name, change):
    path = run_dir / "cams" / f"{name}.npz"
    arrays = load_npz(path)
    change(arrays)
    save_npz(path, **arrays)


def break_checkpoint(run_dir):
    path = run_dir / "train_irn" / "final.pt"
    state = load_checkpoint(path)
    state["model"]["edge_classifier.weight"] = torch.zeros(1, 96, 1, 1)
    save_checkpoint(path, state)


BREAKERS = {
    "missing": (lambda r, n: (r / "cams" / f"{n}.npz").unlink(), "not found"),
    "keys": (lambda r, n: edit_cam(r, n, lambda a: a.update(keys=(a["keys"] + 1) % 8)), "keys"),
    "size": (lambda r, n: edit_cam(r, n, lambda a: a.update(cam=a["cam"][:, 1:])), "'cam'"),
    "checkpoint": (lambda r, n: break_checkpoint(r), "edge_classifier.weight"),
    "bg_thres": (None, "pseudo_labels.bg_thres=1.5"),
    "beta": (None, "pseudo_labels.beta=0"),
    "method": (None, "pseudo_labels.method='walk'"),
}


@pytest.mark.parametrize("kind", list(BREAKERS))
def test_bad_inputs_are_one_line_errors(tiny_dataset, run_copy, irn_run, refine_overrides,
                                        capsys, kind):
    run_dir = run_copy("train_irn", source=irn_run)
    name = train_names(tiny_dataset)[-1]
    breaker, needle = BREAKERS[kind]
    extra = []
    if breaker is None:
        extra = [needle.replace("'", "")]
    else:
        breaker(run_dir, name)
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, run_dir, *extra)]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and needle in err
    if kind in ("missing", "keys", "size", "checkpoint"):
        assert str(run_dir) in err
    assert not list(run_dir.glob("pseudo_labels/*")) and not list(run_dir.glob("walks/*"))


def test_eval_labels_bad_inputs(tiny_dataset, run_copy, irn_run, refine_overrides, capsys):
    run_dir = run_copy("train_irn", source=irn_run)
    args = refine_overrides(tiny_dataset, run_dir)
    assert main(["eval-labels", *args]) == 2
    assert "pseudo_labels" in capsys.readouterr().err
    assert main(["pseudo-labels", *args]) == 0
    bad_range = refine_overrides(tiny_dataset, run_dir, "eval_labels.sweep_stop=1.5")
    assert main(["eval-labels", *bad_range]) == 2
    assert "sweep_stop" in capsys.readouterr().err
    victim = run_dir / "pseudo_labels" / f"{train_names(tiny_dataset)[0]}.png"
    save_label_png(victim, np.zeros((5, 7), np.uint8))  # a label of another size
    code = main(["eval-labels", *args])
    err = capsys.readouterr().err
    assert code == 2 and victim.name in err and len(error_lines(err)) == 1
    assert not (run_dir / "eval_labels.json").exists()


def test_auto_walk_threshold_labels_every_image_at_the_walks_otsu_value(tiny_dataset, run_copy,
                                                                       irn_run, refine_overrides):
    """bg_thres=auto: walks first, then Otsu over all of them, then labels equal to those made
    at that value by the fixed-threshold path."""
    from vwe.data.io import image_size, load_npz, read_label_png
    from vwe.data.voc import VocLayout
    from vwe.inference.thresholds import auto_walk_threshold
    from vwe.refine.random_walk import propagated_to_label, upsample_walk

    run_dir = run_copy("train_irn", "ir_labels", source=irn_run)
    args = [*refine_overrides(tiny_dataset, run_dir), "pseudo_labels.bg_thres=auto"]
    assert main(["pseudo-labels", *args]) == 0
    layout = VocLayout(tiny_dataset)
    names = sorted(p.stem for p in (run_dir / "walks").glob("*.npz"))
    walks = {n: load_npz(run_dir / "walks" / f"{n}.npz") for n in names}
    sizes = {n: image_size(layout.image_path(n)) for n in names}
    chosen = auto_walk_threshold(upsample_walk(walks[n]["rw"].astype("float32"), sizes[n])
                                 for n in names)["bg_thres"]
    assert 0 < chosen < 1
    for name in names:
        want = propagated_to_label(walks[name]["rw"].astype("float32"), walks[name]["keys"],
                                   sizes[name], chosen)
        assert (read_label_png(run_dir / "pseudo_labels" / f"{name}.png") == want).all()
    assert f"bg_thres {chosen:g}, auto" in (run_dir / "log.txt").read_text()


def test_plane_scale_auto_labels_at_the_cam_background_score(tiny_dataset, run_copy, irn_run,
                                                            refine_overrides):
    """scale=plane, bg_thres=auto: each walk stores its plane, the threshold is the CAM
    background score's rule over the split's CAMs, the labels are the walked CAM scores against
    it, and eval-labels sweeps the same maps (its value at the chosen score is the labels')."""
    from vwe.data.io import image_size
    from vwe.data.voc import VocLayout
    from vwe.inference.thresholds import auto_background_score
    from vwe.refine.random_walk import walk_to_labels, walked_cam_scores

    run_dir = run_copy("train_irn", "ir_labels", source=irn_run)
    walk = "pseudo_labels.exp_times=2"  # a short walk: on ~20×20 grids T^256 is flat
    args = [*refine_overrides(tiny_dataset, run_dir, walk), "pseudo_labels.scale=plane",
            "pseudo_labels.bg_thres=auto"]
    assert main(["pseudo-labels", *args]) == 0
    layout = VocLayout(tiny_dataset)
    names = sorted(p.stem for p in (run_dir / "walks").glob("*.npz"))
    chosen = auto_background_score(run_dir / "cams" / f"{n}.npz" for n in names)["bkg_score"]
    for name in names:
        arrays = load_npz(run_dir / "walks" / f"{name}.npz")
        rw, plane = arrays["rw"].astype("float32"), arrays["plane"].astype("float32")
        assert plane.shape == (1, *rw.shape[1:]) and 0 < plane.max() <= 1 + 1e-3
        want = walk_to_labels(walked_cam_scores(rw, plane, image_size(layout.image_path(name))),
                              arrays["keys"], chosen)
        assert (read_label_png(run_dir / "pseudo_labels" / f"{name}.png") == want).all()
    assert f"bg_thres {chosen:g}, auto: the CAM background score" in \
        (run_dir / "log.txt").read_text()
    sweep = [f"eval_labels.sweep_start={chosen}", f"eval_labels.sweep_stop={chosen + 0.2}",
             "eval_labels.sweep_step=0.2"]
    assert main(["eval-labels", *args, *sweep]) == 0
    report = eval_json(run_dir)
    assert report["sweep"]["miou"][0] == report["scores"]["miou"]
    assert report["sweep"]["miou"][1] != report["scores"]["miou"]


def test_class_thresholds_label_each_class_at_its_own_score(tiny_dataset, run_copy, irn_run,
                                                          refine_overrides, capsys):
    """class_thresholds: the summary holds one score per class (the auto score scaled by the
    class means of the split's CAMs) and each label is its walk against its keys' scores; with
    IRNet's scale it stops before any walk, in one line."""
    from vwe.config import load_config
    from vwe.data.io import image_size
    from vwe.data.voc import VocLayout
    from vwe.inference.thresholds import (
        auto_background_score,
        cam_histograms,
        class_background_scores,
    )
    from vwe.refine.random_walk import walk_to_labels, walked_cam_scores
    from vwe.stages import pseudo_labels as pseudo_labels_stage

    run_dir = run_copy("train_irn", "ir_labels", source=irn_run)
    base = refine_overrides(tiny_dataset, run_dir, "pseudo_labels.exp_times=2")
    assert main(["pseudo-labels", *base, "pseudo_labels.class_thresholds=true"]) == 2
    assert "needs pseudo_labels.scale=plane" in capsys.readouterr().err
    assert not list(run_dir.glob("walks/*.npz"))
    args = [*base, "pseudo_labels.scale=plane", "pseudo_labels.bg_thres=auto",
            "pseudo_labels.class_thresholds=true"]
    summary = pseudo_labels_stage.run(load_config(None, args))
    layout = VocLayout(tiny_dataset)
    names = sorted(p.stem for p in (run_dir / "walks").glob("*.npz"))
    cams = [run_dir / "cams" / f"{n}.npz" for n in names]
    shared = auto_background_score(cams)["bkg_score"]
    want_scores = class_background_scores(shared, cam_histograms(cams, 8)[1]).round(4)
    chosen = summary["auto"]["class_bg_thres"]
    assert "per class: " in (run_dir / "log.txt").read_text()
    assert list(chosen) == layout.class_names
    np.testing.assert_allclose(list(chosen.values()), want_scores)
    assert len(set(chosen.values())) > 1  # the classes' scores differ
    differs = 0
    for name in names:
        arrays = load_npz(run_dir / "walks" / f"{name}.npz")
        scores = walked_cam_scores(arrays["rw"].astype("float32"),
                                   arrays["plane"].astype("float32"),
                                   image_size(layout.image_path(name)))
        want = walk_to_labels(scores, arrays["keys"], want_scores[arrays["keys"]])
        got = read_label_png(run_dir / "pseudo_labels" / f"{name}.png")
        assert (got == want).all()
        differs += int((got != walk_to_labels(scores, arrays["keys"], shared)).any())
    assert differs > 0  # not the shared score's labels


def test_plane_scale_fixed_threshold_and_a_walk_without_its_plane(tiny_dataset, run_copy, irn_run,
                                                                  refine_overrides, capsys):
    """scale=plane with a fixed bg_thres: the labels are the stored walk's CAM scores against
    that score; eval-labels on walks made at scale=max says which stage to rerun."""
    from vwe.data.io import image_size
    from vwe.data.voc import VocLayout
    from vwe.refine.random_walk import walk_to_labels, walked_cam_scores

    run_dir = run_copy("train_irn", "ir_labels", source=irn_run)
    walk = "pseudo_labels.exp_times=2"
    plane = [*refine_overrides(tiny_dataset, run_dir, walk), "pseudo_labels.scale=plane",
             "pseudo_labels.bg_thres=0.3"]
    assert main(["pseudo-labels", *plane]) == 0
    layout = VocLayout(tiny_dataset)
    labels = {}
    for path in sorted((run_dir / "walks").glob("*.npz")):
        arrays = load_npz(path)
        scores = walked_cam_scores(arrays["rw"], arrays["plane"],
                                   image_size(layout.image_path(path.stem)))
        want = walk_to_labels(scores, arrays["keys"], 0.3)
        labels[path.stem] = read_label_png(run_dir / "pseudo_labels" / f"{path.stem}.png")
        assert (labels[path.stem] == want).all()
    max_scale = [*refine_overrides(tiny_dataset, run_dir, walk), "pseudo_labels.bg_thres=0.3"]
    assert main(["pseudo-labels", "--overwrite", *max_scale]) == 0  # the scale is recorded
    assert any((read_label_png(run_dir / "pseudo_labels" / f"{n}.png") != lab).any()
               for n, lab in labels.items())
    assert "plane" not in load_npz(next((run_dir / "walks").glob("*.npz")))
    capsys.readouterr()
    assert main(["eval-labels", *max_scale[:-1], "pseudo_labels.scale=plane",
                 "pseudo_labels.bg_thres=0.3", "eval_labels.label_dir=" +
                 str(run_dir / "pseudo_labels")]) == 2
    assert "plane" in capsys.readouterr().err
