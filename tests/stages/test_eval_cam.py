"""`vwe eval-cam` on hand-made CAM files and masks, checked against hand-computed mIoU.

Classes (classes.txt): cat, dog, cow → ids 1, 2, 3. cow is predicted but absent from the GT.

Image a (2×3), keys [cat, cow]:      Image b (2×2), keys [dog]:
  GT  0 1 1     cat .1 .9 .5           GT 2 2    dog .6  .25
      0 ∅ 2         .3 .8 .2              0 0        .25 .1
  (∅ = 255)     cow  0  0 .7
                     0 .9  0
At bkg 0.25 (ties → background) the confusion (rows GT 0..3) is
  [3 1 0 0] [0 1 0 1] [2 0 1 0] [0 0 0 0]
so IoU bg 3/6, cat 1/3, dog 1/3 and mIoU = (1/2 + 1/3 + 1/3) / 3 = 7/18 (cow excluded).
At 0.2: IoU 2/5, 1/3, 2/4 → 37/90; at 0.3: 4/6, 1/2, 1/3 → 1/2 (the sweep's best).
"""

import dataclasses
import json

import numpy as np
import pytest

from vwe.cli import main
from vwe.config import Config, DataConfig, EvalCamConfig, IrLabelConfig
from vwe.data.io import save_label_png, save_npz
from vwe.errors import VweError
from vwe.inference.thresholds import auto_background_score
from vwe.metrics import cam_to_label, confusion_matrix, segmentation_scores
from vwe.stage_records import stage_record
from vwe.stages import eval_cam

GT = {
    "a": np.array([[0, 1, 1], [0, 255, 2]], dtype=np.uint8),
    "b": np.array([[2, 2], [0, 0]], dtype=np.uint8),
}
CAMS = {
    "a": (np.array([0, 2]), np.array([[[0.1, 0.9, 0.5], [0.3, 0.8, 0.2]],
                                      [[0.0, 0.0, 0.7], [0.0, 0.9, 0.0]]], dtype=np.float32)),
    "b": (np.array([1]), np.array([[[0.6, 0.25], [0.25, 0.1]]], dtype=np.float32)),
}


def _write_voc(root, names=("a", "b")):
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    (root / "classes.txt").write_text("cat\ndog\ncow\n")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{n}\n" for n in names))
    classes = ["cat", "dog", "cow"]
    for name in names:
        save_label_png(root / "SegmentationClassAug" / f"{name}.png", GT[name])
        objects = "".join(f"<object><name>{classes[k]}</name></object>" for k in CAMS[name][0])
        (root / "Annotations" / f"{name}.xml").write_text(f"<annotation>{objects}</annotation>")


def _write_cams(run_dir, with_parts=True):
    for name, (keys, high_res) in CAMS.items():
        parts = {"high_res_img": high_res, "high_res_word": np.zeros_like(high_res)}
        save_npz(run_dir / "cams" / f"{name}.npz", keys=keys, cam=high_res[:, ::4, ::4],
                 high_res=high_res, **(parts if with_parts else {}))


@pytest.fixture()
def cfg(tmp_path):
    _write_voc(tmp_path / "voc")
    _write_cams(tmp_path / "run")
    return Config(run_dir=str(tmp_path / "run"), data=DataConfig(root=str(tmp_path / "voc")),
                  eval_cam=EvalCamConfig(split="train", bkg_score=0.25, sweep=True,
                                         sweep_start=0.2, sweep_stop=0.3, sweep_step=0.05))


def test_hand_computed_miou_sweep_and_json(cfg, tmp_path):
    summary = eval_cam.run(cfg)
    assert summary["miou"] == pytest.approx(7 / 18)
    report = json.loads((tmp_path / "run" / "eval_cam.json").read_text())
    assert report["class_names"] == ["background", "cat", "dog", "cow"]
    assert list(report["variants"]) == ["fused", "img", "word"]
    fused = report["variants"]["fused"]
    assert fused["at_bkg_score"]["confusion"] == [[3, 1, 0, 0], [0, 1, 0, 1], [2, 0, 1, 0],
                                                  [0, 0, 0, 0]]
    assert fused["at_bkg_score"]["iou"][:3] == pytest.approx([1 / 2, 1 / 3, 1 / 3])
    assert fused["at_bkg_score"]["iou"][3] == 0.0  # predicted, not in GT: shown, not averaged
    assert fused["at_bkg_score"]["pixel_accuracy"] == pytest.approx(5 / 9)
    assert fused["sweep"]["thresholds"] == pytest.approx([0.2, 0.25, 0.3])
    assert fused["sweep"]["miou"] == pytest.approx([37 / 90, 7 / 18, 1 / 2])
    assert fused["sweep"]["best_threshold"] == pytest.approx(0.3)
    assert fused["sweep"]["best"]["miou"] == pytest.approx(1 / 2)
    assert report["variants"]["img"]["at_bkg_score"]["miou"] == pytest.approx(7 / 18)
    # A zero word CAM predicts background everywhere: IoU bg 4/9, cat 0, dog 0.
    assert report["variants"]["word"]["at_bkg_score"]["miou"] == pytest.approx(4 / 27)
    assert summary["variants"]["fused"] == {"miou": pytest.approx(7 / 18),
                                            "best_miou": pytest.approx(0.5),
                                            "best_threshold": pytest.approx(0.3)}
    assert "mIoU" in summary["table"] and "38.9" in summary["table"]


def test_without_sweep_or_parts(tmp_path):
    _write_voc(tmp_path / "voc")
    _write_cams(tmp_path / "run", with_parts=False)
    cfg = Config(run_dir=str(tmp_path / "run"), data=DataConfig(root=str(tmp_path / "voc")),
                 eval_cam=EvalCamConfig(split="train", bkg_score=0.3, sweep=False))
    summary = eval_cam.run(cfg)
    assert summary["miou"] == pytest.approx(0.5)
    assert summary["variants"] == {"fused": {"miou": pytest.approx(0.5)}}
    report = json.loads((tmp_path / "run" / "eval_cam.json").read_text())
    assert report["variants"]["fused"]["sweep"] is None


def test_missing_cam_file_says_run_make_cam(cfg, tmp_path):
    (tmp_path / "run" / "cams" / "b.npz").unlink()
    with pytest.raises(VweError, match=r"b\.npz.*vwe make-cam"):
        eval_cam.run(cfg)


def test_size_mismatch_names_cam_and_mask(cfg, tmp_path):
    keys, high_res = CAMS["b"]
    save_npz(tmp_path / "run" / "cams" / "b.npz", keys=keys, high_res=high_res[:, :, :1])
    with pytest.raises(VweError, match=r"b\.npz.*2x1.*SegmentationClassAug/b\.png.*2x2"):
        eval_cam.run(cfg)


def test_keys_outside_dataset_classes(cfg, tmp_path):
    save_npz(tmp_path / "run" / "cams" / "b.npz", keys=np.array([3]), high_res=CAMS["b"][1])
    with pytest.raises(VweError, match=r"b\.npz.*keys \[3\].*3 foreground classes"):
        eval_cam.run(cfg)


def test_part_recalls_on_generated_data_equal_a_pixel_loop(cam_run, tiny_dataset, run_copy,
                                                          refine_overrides):
    from vwe.cli import main
    from vwe.data.io import load_npz
    from vwe.data.voc import VocLayout

    run_dir = run_copy()
    assert main(["eval-cam", *refine_overrides(tiny_dataset, run_dir)]) == 0
    parts = json.loads((run_dir / "eval_cam.json").read_text())["parts"]
    layout = VocLayout(tiny_dataset)
    hits = np.zeros((2, layout.num_classes + 1))
    totals = np.zeros((2, layout.num_classes + 1))
    for name in layout.read_split("train"):
        cams = load_npz(run_dir / "cams" / f"{name}.npz")
        gt, part = layout.read_mask(name), layout.read_parts(name)
        for y in range(gt.shape[0]):
            for x in range(gt.shape[1]):
                if gt[y, x] in (0, 255) or part[y, x] not in (1, 2):
                    continue
                scores = cams["high_res"][:, y, x]
                pred = 0 if scores.max() <= 0.14 else int(cams["keys"][scores.argmax()]) + 1
                kind = 0 if part[y, x] == 2 else 1
                totals[kind, gt[y, x]] += 1
                hits[kind, gt[y, x]] += pred == gt[y, x]
    for kind, name in enumerate(("mark", "body")):
        want = [hits[kind, c] / totals[kind, c] if totals[kind, c] else None
                for c in range(1, layout.num_classes + 1)]
        got = parts[f"{name}_recall"][1:]
        assert [g is None for g in got] == [w is None for w in want]
        present = [w for w in want if w is not None]
        assert [g for g in got if g is not None] == pytest.approx(present)


def test_eval_cam_and_ir_labels_record_what_auto_chose(tiny_dataset, run_copy, refine_overrides):
    run_dir = run_copy()
    args = [*refine_overrides(tiny_dataset, run_dir), "eval_cam.bkg_score=auto",
            "ir_labels.fg_thres=auto", "ir_labels.bg_thres=auto", "ir_labels.num_workers=0"]
    assert main(["eval-cam", *args]) == 0
    report = json.loads((run_dir / "eval_cam.json").read_text())
    names = sorted(p for p in (run_dir / "cams").glob("*.npz"))
    train = {line.split()[0] for line in
             (tiny_dataset / "ImageSets" / "Segmentation" / "train.txt").read_text().splitlines()}
    expected = auto_background_score([p for p in names if p.stem in train])
    assert report["auto"]["bkg_score"] == expected["bkg_score"] == report["bkg_score"]
    assert report["variants"]["fused"]["at_bkg_score"]["threshold"] == expected["bkg_score"]
    assert main(["ir-labels", *args]) == 0
    done = json.loads((run_dir / "ir_labels" / "record.json").read_text())
    assert done["settings"]["ir_labels.fg_thres"] == "auto"  # the record holds the word
    assert "auto thresholds fg" in (run_dir / "log.txt").read_text()
    # IR labels centre on the same rule over every training CAM (docs/method.md#auto-thresholds)
    chosen = auto_background_score(names)
    assert (f"auto thresholds fg {chosen['fg_thres']:g}, bg {chosen['bg_thres']:g} "
            f"(background score {chosen['bkg_score']:g}, otsu over the highest CAM score per "
            f"pixel, on score^0.7; {chosen['ir_rule']})") in (run_dir / "log.txt").read_text()
    assert chosen["bkg_score"] != auto_background_score(names, power=1.0)["bkg_score"]


def _brute_force_best(names, thresholds):
    """The lowest threshold with the best mIoU over the named images, one label map at a time."""
    best, best_t = -1.0, None
    for t in thresholds:
        conf = sum(confusion_matrix(GT[n], cam_to_label(CAMS[n][1], CAMS[n][0], t), 4)
                   for n in names)
        miou = segmentation_scores(conf, ["bg", "cat", "dog", "cow"])["miou"]
        if miou > best + 1e-12:
            best, best_t = miou, t
    return best_t, best


def test_auto_calibrates_on_the_few_labelled_images_and_scores_only_those(tmp_path, caplog):
    """Image c has CAMs but no mask: auto chooses on a and b's masks (not Otsu over all three),
    eval-cam scores a and b, says so, and the record follows the labelled masks."""
    _write_voc(tmp_path / "voc")
    _write_cams(tmp_path / "run", with_parts=False)
    root = tmp_path / "voc"
    split = root / "ImageSets" / "Segmentation" / "train.txt"
    split.write_text("a\nb\nc\n")
    (root / "Annotations" / "c.xml").write_text("<annotation><object><name>cat</name></object>"
                                                "</annotation>")
    save_npz(tmp_path / "run" / "cams" / "c.npz", keys=np.array([0]),
             high_res=np.array([[[0.95, 0.9], [0.05, 0.6]]], np.float32),
             cam=np.zeros((1, 1, 1), np.float32))
    cfg = Config(run_dir=str(tmp_path / "run"), data=DataConfig(root=str(root)),
                 eval_cam=EvalCamConfig(split="train", bkg_score="auto", sweep=False))
    summary = eval_cam.run(cfg)
    report = json.loads((tmp_path / "run" / "eval_cam.json").read_text())
    want, want_miou = _brute_force_best(["a", "b"], np.arange(100) / 100)
    assert report["auto"]["bkg_score"] == pytest.approx(want) == report["bkg_score"]
    assert report["auto"]["miou_on_masks"] == pytest.approx(want_miou, abs=1e-4)
    assert "2 labelled images" in report["auto"]["rule"]
    assert summary["num_images"] == 2 and summary["miou"] == pytest.approx(want_miou)
    assert any("2 of 3 images of 'train' have masks" in w and "optimistic" in w
               for w in report["warnings"])
    otsu = auto_background_score(sorted((tmp_path / "run" / "cams").glob("*.npz")))
    assert otsu["bkg_score"] != report["bkg_score"]  # the masks, not the score histogram
    before = stage_record(cfg, "eval_cam")
    ir_auto = dataclasses.replace(cfg, data=DataConfig(root=str(root), train_list="train"),
                                  ir_labels=IrLabelConfig(fg_thres="auto", bg_thres="auto"))
    assert "calibration" in stage_record(ir_auto, "ir_labels").inputs
    assert "calibration" not in stage_record(  # fixed thresholds: the masks play no part
        dataclasses.replace(ir_auto, ir_labels=IrLabelConfig()), "ir_labels").inputs
    save_label_png(root / "SegmentationClassAug" / "c.png", np.array([[1, 1], [0, 0]], np.uint8))
    assert stage_record(cfg, "eval_cam") != before  # every image labelled now: Otsu again
    assert eval_cam.run(cfg)["bkg_score"] == otsu["bkg_score"]
