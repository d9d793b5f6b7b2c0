"""`vwe run` end to end on the tiny dataset: every stage, the stage table, skipping finished
stages, resuming an interrupted one, and --from; on a folder dataset without masks, then
`vwe predict` on new images and `vwe export` in both formats."""

import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch

from vwe.cli import main
from vwe.data.io import load_npz, read_image, read_label_png
from vwe.data.voc import VocLayout

SEG = ["seg.backbone=resnet_tiny", "seg.pretrained=none", "seg.frozen_bn=false",
       "train_seg.iterations=4", "train_seg.batch_size=4", "train_seg.crop_size=64",
       "train_seg.lr=0.002", "train_seg.checkpoint_every=2", "infer_seg.crf.workers=0",
       "eval_seg.split=val", "infer_seg.split=val", "pseudo_labels.split=train_aug"]


def done(run_dir):
    return sorted(p.stem for p in (run_dir / "done").glob("*.json"))


def test_run_whole_pipeline_skips_resumes_and_reruns(tiny_dataset, tmp_path, refine_overrides,
                                                     capsys):
    run_dir = tmp_path / "run"
    args = ["run", *refine_overrides(tiny_dataset, run_dir), *SEG]
    assert main([*args, "train_seg.stop_at_step=2"]) == 0  # interrupted inside train-seg
    assert "train_seg" not in done(run_dir) and "train_irn" in done(run_dir)
    assert not (run_dir / "seg").exists()
    capsys.readouterr()

    cam_mtime = (run_dir / "train_cam" / "final.pt").stat().st_mtime_ns
    assert main(args) == 0  # finished stages skipped, train-seg resumed from step 2
    out = capsys.readouterr()
    assert "resuming" in out.err and (run_dir / "train_cam" / "final.pt").stat().st_mtime_ns \
        == cam_mtime
    assert done(run_dir) == sorted(["train_cam", "make_cam", "eval_cam", "ir_labels",
                                    "train_irn", "pseudo_labels", "eval_labels", "train_seg",
                                    "infer_seg", "eval_seg"])
    table = out.out
    for row in ("CAM (train)", "pseudo labels (train)", "segmentation (val)",
                "segmentation + CRF (val)"):
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert line.split()[-2] != "-", line  # our number is there
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["eval_cam"]["miou"] <= 1
    # the same DeepLab on the true masks, scored on val, and weak / full in the table
    full = json.loads((run_dir / "supervised" / "eval_seg.json").read_text())
    full_crf = summary["supervised"]["variants"]["crf"]
    assert full_crf == full["variants"]["crf"]["miou"] > 0
    weak = summary["eval_seg"]["variants"]["crf"]
    ratio_line = next(line for line in table.splitlines() if line.startswith("weak / full"))
    assert ratio_line.split()[-2] == f"{100 * weak / full_crf:.1f}%"

    assert main(args) == 0  # everything done: nothing recomputed
    assert "skipped" in capsys.readouterr().err
    assert (run_dir / "train_cam" / "final.pt").stat().st_mtime_ns == cam_mtime

    seg_mtime = (run_dir / "train_seg" / "final.pt").stat().st_mtime_ns
    assert main([*args, "--from", "eval-seg"]) == 0
    assert (run_dir / "train_seg" / "final.pt").stat().st_mtime_ns == seg_mtime


def stage_mtimes(run_dir):
    return {stage: (run_dir / "done" / f"{stage}.json").stat().st_mtime_ns
            for stage in done(run_dir)}


def test_run_reruns_a_changed_stage_and_every_later_one(tiny_dataset, tmp_path,
                                                        refine_overrides, capsys):
    run_dir = tmp_path / "run"
    args = ["run", *refine_overrides(tiny_dataset, run_dir, "pseudo_labels.exp_times=2"), *SEG]
    assert main(args) == 0
    first = json.loads((run_dir / "summary.json").read_text())
    marks = stage_mtimes(run_dir)
    capsys.readouterr()

    assert main([*args, "pseudo_labels.bg_thres=0.5"]) == 0
    out = capsys.readouterr()
    again = stage_mtimes(run_dir)
    later = ["pseudo_labels", "eval_labels", "train_seg", "infer_seg", "eval_seg"]
    assert [s for s in marks if again[s] != marks[s]] == sorted(later)
    second = json.loads((run_dir / "summary.json").read_text())
    assert second["eval_labels"]["miou"] != first["eval_labels"]["miou"]
    assert second["eval_cam"] == first["eval_cam"]
    assert "bg_thres: 0.25 → 0.5" in out.err  # the log says why it reruns

    seg_final = (run_dir / "train_seg" / "final.pt").stat().st_mtime_ns
    irn_final = (run_dir / "train_irn" / "final.pt").stat().st_mtime_ns
    assert main([*args, "pseudo_labels.bg_thres=0.5", "--from", "pseudo-labels"]) == 0
    third = stage_mtimes(run_dir)
    assert [s for s in again if third[s] != again[s]] == sorted(later)
    assert (run_dir / "train_seg" / "final.pt").stat().st_mtime_ns != seg_final  # retrained
    assert (run_dir / "train_irn" / "final.pt").stat().st_mtime_ns == irn_final
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_labels"]["miou"] == second["eval_labels"]["miou"]  # deterministic


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_run_on_a_folder_dataset_without_masks_goes_to_the_end(tiny_dataset, tmp_path,
                                                                refine_overrides, voc_to_folder,
                                                                capsys):
    images, masks = voc_to_folder(tiny_dataset, tmp_path / "folder")  # masks not given yet
    run_dir = tmp_path / "run"
    args = ["run", *refine_overrides(images, run_dir), "data.format=folder", *SEG]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "split 'train' has no masks" in out.err and "split 'val' has no masks" in out.err
    assert "the configured ones are used (eval_cam.bkg_score=0.14, ir_labels.fg_thres=0.3" \
        in out.err and "(pseudo_labels.bg_thres=0.25)" in out.err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval_labels"]["configured"] == {"pseudo_labels.bg_thres": 0.25}
    assert (run_dir / "train_seg" / "final.pt").is_file()
    assert len(list((run_dir / "seg" / "val" / "crf").glob("*.png"))) == 16
    assert len(list((run_dir / "pseudo_labels").glob("*.png"))) == 48
    rows = {line[:28].strip(): line.split()[-2] for line in out.out.splitlines()
            if line.startswith(("CAM", "pseudo", "segmentation"))}
    assert set(rows.values()) == {"-"} and len(rows) == 4  # nothing scored, nothing invented

    # masks given later: every evaluation scores them; nothing else is recomputed
    cam_mtime = (run_dir / "train_cam" / "final.pt").stat().st_mtime_ns
    assert main([*args, f"data.masks={masks}", "pipeline.supervised=false"]) == 0
    out = capsys.readouterr()
    rows = {line[:28].strip(): line.split()[-2] for line in out.out.splitlines()
            if line.startswith(("CAM", "pseudo", "segmentation"))}
    assert "-" not in rows.values() and len(rows) == 4, rows
    assert (run_dir / "train_cam" / "final.pt").stat().st_mtime_ns == cam_mtime

    # the trained model on images outside the dataset (the generator's test split), then exported
    outside = tmp_path / "new_images"
    outside.mkdir()
    for name in VocLayout(tiny_dataset).read_split("test")[:3]:
        shutil.copy(VocLayout(tiny_dataset).image_path(name), outside / f"{name}.jpg")
    checkpoint = str(run_dir / "train_seg" / "final.pt")
    predicted = tmp_path / "predicted"
    assert main(["predict", checkpoint, str(outside), "--out", str(predicted),
                 "predict.probs=true"]) == 0
    assert main(["export", "--format", "onnx", checkpoint, str(tmp_path / "seg.onnx")]) == 0
    assert main(["export", "--format", "torchscript", checkpoint, str(tmp_path / "seg.pt")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "seg.onnx"),
                                           providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(tmp_path / "seg.pt"))
    for path in sorted(outside.iterdir()):
        pixels = read_image(path).astype(np.float32).transpose(2, 0, 1)[None]
        probs = load_npz(predicted / "probs" / f"{path.stem}.npz")["probs"]
        mask = read_label_png(predicted / "masks" / f"{path.stem}.png")
        for logits in (session.run(None, {"images": pixels})[0][0],
                       scripted(torch.from_numpy(pixels))[0].detach().numpy()):
            np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 0).numpy(), probs,
                                       atol=1e-4)
            assert (logits.argmax(0) == mask).mean() > 0.999


def test_a_missing_photo_stops_vwe_run_before_any_stage(tiny_dataset, tmp_path,
                                                       refine_overrides, capsys):
    """The whole dataset is checked first: a split naming a photo that is gone stops `vwe run`
    in one line before pretraining or training writes anything."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    gone = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[-1]
    (root / "JPEGImages" / f"{gone}.jpg").unlink()
    run_dir = tmp_path / "run"
    args = ["run", *refine_overrides(root, run_dir), *SEG, "model.pretrained=generated",
            f"pretrain.cache_dir={tmp_path / 'cache'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"lists '{gone}'" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "cache").exists() and not (run_dir / "done").exists()
    assert not (run_dir / "train_cam").exists()
