"""vwe ablate and vwe sweep on the tiny dataset with one seed and few steps: the files, each row's
settings, numbers equal to the runs' own eval JSON, a shared training, and resumption."""

import json
from pathlib import Path

import pytest
from PIL import Image

from vwe.cli import main
from vwe.config import load_config, parse_sweep
from vwe.errors import VweError

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny(root, run_dir):
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0", "device=cpu",
            "model.backbone=resnet_tiny", "model.pretrained=none", "model.num_words=8",
            "model.frozen_bn=false", "train_cam.batch_size=4", "train_cam.max_steps=2",
            "train_cam.crop_size=64", "train_cam.momentum=0.9", "cam.scales=[1.0]",
            "eval_cam.split=val"]


def fused_miou(run_dir):
    report = json.loads((Path(run_dir) / "eval_cam.json").read_text())["variants"]["fused"]
    return 100 * report["at_bkg_score"]["miou"], 100 * report["sweep"]["best"]["miou"]


def test_ablate_runs_every_row_scores_them_from_their_runs_and_resumes(tiny_dataset, tmp_path,
                                                                        capsys):
    run_dir = tmp_path / "abl"
    dataset_stamp = (tiny_dataset / "synthetic.json").stat().st_mtime_ns
    assert main(["ablate", "--seeds", "1", *tiny(tiny_dataset, run_dir)]) == 0
    assert (tiny_dataset / "synthetic.json").stat().st_mtime_ns == dataset_stamp  # left alone
    out = capsys.readouterr().out
    parent = run_dir / "ablation"
    report = json.loads((parent / "ablation.json").read_text())
    slugs = [row["slug"] for row in report["rows"]]
    assert slugs == ["baseline", "vwe", "hspp", "both", "both-fusion-off", "both-temperature"]
    for row in report["rows"]:
        (run,) = row["runs"]
        at_bkg, best = fused_miou(run["run_dir"])
        assert run["cam_at_bkg"] == pytest.approx(at_bkg, abs=1e-3)
        assert row["cam_at_bkg"]["mean"] == pytest.approx(at_bkg, abs=1e-3)
        assert row["cam_best"]["mean"] == pytest.approx(best, abs=1e-3) and best >= at_bkg
        saved = load_config(Path(run["run_dir"]) / "configs" / "ablate.yaml")
        assert saved.seed == 1 and saved.cam.split == "val"
        assert row["label"].split()[0] in out
    saved = {row["slug"]: load_config(Path(row["runs"][0]["run_dir"]) / "configs" /
                                      "ablate.yaml") for row in report["rows"]}
    assert saved["baseline"].model.pooling == "gap" and saved["baseline"].train_cam.losses.word == 0
    assert saved["vwe"].model.pooling == "gap" and saved["vwe"].train_cam.losses.word == 1
    assert saved["hspp"].model.pooling == "hspp" and not saved["hspp"].cam.fuse_word_cam
    assert saved["both"].cam.fuse_word_cam and not saved["both-fusion-off"].cam.fuse_word_cam
    assert saved["both-temperature"].model.temperature == 0.05
    both, off = (parent / slug / "seed1" / "train_cam" / "final.pt"
                 for slug in ("both", "both-fusion-off"))
    assert both.read_bytes() == off.read_bytes()  # one training for the two inference rows
    assert Image.open(parent / "ablation.png").size[0] > 300
    assert "48.3" in out and "52.9" in out  # the paper's Table 1 beside ours

    stamps = {p: p.stat().st_mtime_ns for p in parent.glob("*/seed1/train_cam/final.pt")}
    assert main(["ablate", "--seeds", "1", *tiny(tiny_dataset, run_dir)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained
    assert json.loads((parent / "ablation.json").read_text())["rows"] == report["rows"]


def test_sweep_runs_each_value_and_plots_them(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "sw"
    assert main(["sweep", "model.num_words=4,8", "--seeds", "1",
                 *tiny(tiny_dataset, run_dir)]) == 0
    parent = run_dir / "sweep-model.num_words"
    report = json.loads((parent / "sweep.json").read_text())
    assert report["key"] == "model.num_words" and report["values"] == [4, 8]
    for value, row in zip((4, 8), report["rows"]):
        run_dir_of = Path(row["runs"][0]["run_dir"])
        assert load_config(run_dir_of / "configs" / "sweep.yaml").model.num_words == value
        assert row["cam_at_bkg"]["mean"] == pytest.approx(fused_miou(run_dir_of)[0], abs=1e-3)
    assert Image.open(parent / "sweep.png").size[0] > 300
    assert "model.num_words" in capsys.readouterr().out


def test_sweep_specs_parse_and_bad_ones_are_one_line(tmp_path, capsys):
    assert parse_sweep("model.hspp_gamma=0,1,2.5") == ("model.hspp_gamma", [0, 1, 2.5])
    with pytest.raises(VweError, match="at least two values"):
        parse_sweep("model.num_words=16")
    assert main(["sweep", "model.num_wrds=4,8", f"run_dir={tmp_path}"]) == 2
    assert "model.num_wrds" in capsys.readouterr().err


THROUGH_SEG = ["cam.split=train_aug", "eval_cam.split=train_aug", "eval_cam.bkg_score=auto",
               "ir_labels.num_workers=0", "train_irn.backbone_init=cam", "train_irn.crop_size=64",
               "train_irn.radius=5", "train_irn.batch_size=4", "train_irn.max_steps=2",
               "pseudo_labels.pad_size=0", "pseudo_labels.split=train_aug",
               "seg.backbone=resnet_tiny", "seg.pretrained=none", "train_seg.iterations=2",
               "train_seg.batch_size=4", "train_seg.crop_size=48", "infer_seg.crf.workers=0",
               "infer_seg.split=val", "eval_seg.split=val"]


def test_sweep_through_eval_seg_scores_every_stage_from_the_runs(tiny_dataset, tmp_path, capsys):
    """`--through eval-seg`: each row runs to the DeepLab's evaluation; the table and JSON hold
    the pseudo labels' and the segmentation's mIoU (without and with CRF) of each run."""
    run_dir = tmp_path / "sw"
    assert main(["sweep", "train_seg.lr=0.001,0.002", "--seeds", "1", "--through", "eval-seg",
                 *tiny(tiny_dataset, run_dir), *THROUGH_SEG]) == 0
    out = capsys.readouterr().out
    assert "at bkg auto" in out and "seg + CRF" in out and "pseudo" in out
    report = json.loads((run_dir / "sweep-train_seg.lr-labels" / "sweep.json").read_text())
    for row in report["rows"]:
        run = Path(row["runs"][0]["run_dir"])
        variants = json.loads((run / "eval_seg.json").read_text())["variants"]
        labels = json.loads((run / "eval_labels.json").read_text())["scores"]["miou"]
        assert row["seg"]["mean"] == pytest.approx(100 * variants["raw"]["miou"], abs=1e-3)
        assert row["seg_crf"]["mean"] == pytest.approx(100 * variants["crf"]["miou"], abs=1e-3)
        assert row["labels"]["mean"] == pytest.approx(100 * labels, abs=1e-3)


def test_every_row_is_validated_before_the_first_trains(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "sw"
    assert main(["sweep", "model.num_words=8,abc", "--seeds", "1",
                 *tiny(tiny_dataset, run_dir)]) == 2
    assert "model.num_words" in capsys.readouterr().err
    assert not list(run_dir.glob("sweep-*/*/seed1/train_cam"))  # no row trained
