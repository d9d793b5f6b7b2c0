"""No stale results: a per-image stage rerun with a changed key recomputes (--overwrite) or
refuses, naming the key; it never keeps old files under new numbers, and consumers refuse
inputs that their config would not make."""

from io import BytesIO

import numpy as np
import torch
from PIL import Image

from vwe.cli import main
from vwe.data.io import load_npz, read_label_png


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def contents(folder, pattern):
    return {p.name: p.read_bytes() for p in sorted(folder.glob(pattern))}


def test_make_cam_scales_and_checkpoint(tiny_dataset, run_copy, refine_overrides, capsys,
                                        tmp_path):
    run_dir = run_copy()
    before = contents(run_dir / "cams", "*.npz")
    assert main(["make-cam", *refine_overrides(tiny_dataset, run_dir, "cam.scales=[1.0]")]) == 2
    err = last_error(capsys)
    assert "cam.scales: [1.0, 0.5] → [1.0]" in err and "--overwrite" in err
    assert contents(run_dir / "cams", "*.npz") == before  # nothing touched

    state = torch.load(run_dir / "train_cam" / "final.pt", weights_only=True)
    state["model"]["classifier.weight"] += 0.5
    other = tmp_path / "other.pt"
    torch.save(state, other)
    assert main(["make-cam", *refine_overrides(tiny_dataset, run_dir,
                                               f"cam.checkpoint={other}")]) == 2
    assert "input checkpoint: sha256:" in last_error(capsys)

    assert main(["make-cam", "--overwrite",
                 *refine_overrides(tiny_dataset, run_dir, "cam.scales=[1.0]")]) == 0
    after = contents(run_dir / "cams", "*.npz")
    assert after.keys() == before.keys() and any(after[k] != before[k] for k in after)
    single = refine_overrides(tiny_dataset, run_copy(), "cam.scales=[1.0]")
    assert main(["make-cam", *single]) == 2  # the copy's CAMs are the two-scale ones
    capsys.readouterr()

    # a consumer whose config would make other CAMs refuses them instead of using them
    assert main(["ir-labels", *refine_overrides(tiny_dataset, run_dir)]) == 2
    err = last_error(capsys)
    assert "cam.scales: [1.0] → [1.0, 0.5]" in err and "vwe make-cam --overwrite" in err
    assert not (run_dir / "ir_labels").exists()
    assert main(["eval-cam", *refine_overrides(tiny_dataset, run_dir)]) == 2


def test_ir_labels_fg_thres(tiny_dataset, run_copy, ir_run, refine_overrides, capsys):
    run_dir = run_copy("ir_labels", source=ir_run)
    before = contents(run_dir / "ir_labels", "*.png")
    changed = refine_overrides(tiny_dataset, run_dir, "ir_labels.fg_thres=0.6")
    assert main(["ir-labels", *changed]) == 2
    assert "ir_labels.fg_thres: 0.3 → 0.6" in last_error(capsys)
    assert contents(run_dir / "ir_labels", "*.png") == before
    assert main(["ir-labels", "--overwrite", *changed]) == 0
    after = contents(run_dir / "ir_labels", "*.png")
    assert after.keys() == before.keys() and any(after[k] != before[k] for k in after)
    assert main(["train-irn", *refine_overrides(tiny_dataset, run_dir)]) == 2  # 0.3 labels wanted
    assert "ir_labels.fg_thres: 0.6 → 0.3" in last_error(capsys)


def test_pseudo_labels_bg_thres_and_beta(tiny_dataset, run_copy, irn_run, refine_overrides,
                                         capsys):
    run_dir = run_copy("train_irn", source=irn_run)
    walk = "pseudo_labels.exp_times=2"  # a short walk: on ~20×20 grids T^256 is flat
    assert main(["pseudo-labels", *refine_overrides(tiny_dataset, run_dir, walk)]) == 0
    labels = contents(run_dir / "pseudo_labels", "*.png")
    walks = contents(run_dir / "walks", "*.npz")
    for key, message in (("pseudo_labels.bg_thres=0.6", "pseudo_labels.bg_thres: 0.25 → 0.6"),
                         ("pseudo_labels.beta=5", "pseudo_labels.beta: 10.0 → 5.0")):
        assert main(["pseudo-labels", *refine_overrides(tiny_dataset, run_dir, walk, key)]) == 2
        assert message in last_error(capsys)
        assert contents(run_dir / "pseudo_labels", "*.png") == labels
    high = refine_overrides(tiny_dataset, run_dir, walk, "pseudo_labels.bg_thres=0.6")
    assert main(["pseudo-labels", "--overwrite", *high]) == 0
    assert contents(run_dir / "walks", "*.npz").keys() == walks.keys()
    fg_before = sum((read_label_png_bytes(b) > 0).sum() for b in labels.values())
    fg_after = sum((read_label_png(p) > 0).sum()
                   for p in (run_dir / "pseudo_labels").glob("*.png"))
    assert fg_after < fg_before  # a higher background plane: less foreground
    for name in walks:  # the walk does not depend on bg_thres: the same maps again
        np.testing.assert_array_equal(load_npz(run_dir / "walks" / name)["rw"],
                                      np.load(_bytes_file(walks[name]))["rw"])
    assert main(["eval-labels", *refine_overrides(tiny_dataset, run_dir, walk)]) == 2  # 0.25
    assert main(["eval-labels", *high]) == 0


def read_label_png_bytes(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(BytesIO(data)))


def _bytes_file(data: bytes) -> BytesIO:
    return BytesIO(data)
