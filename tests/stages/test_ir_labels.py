"""ir-labels: PNGs equal the library's `ir_label` per image, in worker processes or not; the
stage resumes per image; bad CAM files and thresholds are one-line errors with nothing written."""

import numpy as np
import pytest

from vwe.cli import main
from vwe.data.io import load_npz, read_image, read_label_png, save_npz
from vwe.refine import ir_label
from vwe.refine.ir_label import IGNORE

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def names_of(root, split="train_aug"):
    return (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def test_labels_equal_library_and_resume(tiny_dataset, run_copy, refine_overrides):
    run_dir = run_copy()
    args = refine_overrides(tiny_dataset, run_dir, "ir_labels.num_workers=2")
    assert main(["ir-labels", *args]) == 0  # spawned CRF workers
    out = run_dir / "ir_labels"
    names = names_of(tiny_dataset)
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(names)
    assert not list(out.glob(".*"))  # no temporary files left
    for name in names[:3]:
        cams = load_npz(run_dir / "cams" / f"{name}.npz")
        image = read_image(tiny_dataset / "JPEGImages" / f"{name}.jpg")
        expected = ir_label(image, cams["high_res"], cams["keys"], 0.30, 0.05)
        np.testing.assert_array_equal(read_label_png(out / f"{name}.png"), expected)
    labels = np.concatenate([read_label_png(p).ravel() for p in out.glob("*.png")])
    assert {0, IGNORE} <= set(np.unique(labels).tolist()) and labels.max(initial=0) > 0

    victim = out / f"{names[5]}.png"
    before = victim.read_bytes()
    victim.unlink()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert main(["ir-labels", *refine_overrides(tiny_dataset, run_dir)]) == 0  # in process
    assert victim.read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")
            if p != victim} == stamps  # only the deleted one was recomputed


def break_missing(run_dir, name):
    (run_dir / "cams" / f"{name}.npz").unlink()
    return f"{name}.npz not found"


def break_keys(run_dir, name):
    path = run_dir / "cams" / f"{name}.npz"
    arrays = load_npz(path)
    arrays["keys"] = (arrays["keys"] + 1) % 8
    save_npz(path, **arrays)
    return "keys"


def break_size(run_dir, name):
    path = run_dir / "cams" / f"{name}.npz"
    arrays = load_npz(path)
    arrays["high_res"] = arrays["high_res"][:, :-3]
    save_npz(path, **arrays)
    return "high_res"


@pytest.mark.parametrize("breaker", [break_missing, break_keys, break_size])
def test_bad_cam_files_are_one_line_errors(tiny_dataset, run_copy, refine_overrides, capsys,
                                           breaker):
    run_dir = run_copy()
    name = names_of(tiny_dataset)[-1]  # the last image: a lazy check would write the others
    needle = breaker(run_dir, name)
    assert main(["ir-labels", *refine_overrides(tiny_dataset, run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err and needle in err and "make-cam" in err
    assert not list(run_dir.glob("ir_labels/*"))


@pytest.mark.parametrize("setting, needle", [
    ("ir_labels.fg_thres=0.02", "bg_thres <= fg_thres"),
    ("ir_labels.bg_thres=-0.1", "ir_labels.bg_thres=-0.1 must be >= 0 and <= 1"),
    ("ir_labels.fg_thres=1.5", "ir_labels.fg_thres=1.5 must be >= 0 and <= 1")])
def test_thresholds_out_of_range(tiny_dataset, run_copy, refine_overrides, capsys, setting,
                                 needle):
    run_dir = run_copy()
    assert main(["ir-labels", *refine_overrides(tiny_dataset, run_dir, setting)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (run_dir / "ir_labels").exists()
