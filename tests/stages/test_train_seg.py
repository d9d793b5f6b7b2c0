"""train-seg: resume equals an uninterrupted run; W processes × A accumulation steps equal one
process with the same global batch; NaN stops; bad label folders fail in one line, early."""

import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from vwe.cli import main
from vwe.data.io import read_label_png, save_label_png
from vwe.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def seg_overrides(root, run_dir, *extra, label_dir=None):
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0", "device=cpu",
            "seg.backbone=resnet_tiny", "seg.pretrained=none",
            f"seg.label_dir={label_dir or root / 'SegmentationClassAug'}",
            "train_seg.iterations=4", "train_seg.batch_size=4", "train_seg.crop_size=48",
            "train_seg.checkpoint_every=2", "train_seg.lr=0.002", *extra]


def final(run_dir):
    return load_checkpoint(run_dir / "train_seg" / "final.pt")


def assert_same_weights(a, b, atol=0.0):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=atol, rtol=0,
                                   msg=key)


def test_an_earlier_run_with_the_same_settings_names_the_key_that_restarts_it(
        tiny_dataset, tmp_path, capsys):
    """--overwrite only recomputes what other settings made, so the error for an interrupted
    run of the same settings must name what does start it again."""
    args = seg_overrides(tiny_dataset, tmp_path / "run")
    assert main(["train-seg", *args, "train_seg.stop_at_step=2"]) == 0
    capsys.readouterr()
    assert main(["train-seg", "--overwrite", *args]) == 2
    assert "overwrite=always to start again" in capsys.readouterr().err
    assert main(["train-seg", *args, "overwrite=always"]) == 0
    assert final(tmp_path / "run")["step"] == 4


@pytest.mark.parametrize("extra", [
    ("train_seg.recipe=deeplab", "train_seg.poly_update_every=1"),
    ("train_seg.recipe=vwe-author", "seg.frozen_bn=false", "train_seg.loss=balanced_ce"),
])
def test_resume_equals_uninterrupted(tiny_dataset, tmp_path, extra):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train-seg", *seg_overrides(tiny_dataset, straight, *extra)]) == 0
    args = seg_overrides(tiny_dataset, resumed, *extra)
    assert main(["train-seg", *args, "train_seg.stop_at_step=2"]) == 0
    assert load_checkpoint(resumed / "train_seg" / "last.pt")["step"] == 2
    assert not (resumed / "train_seg" / "final.pt").exists()
    assert main(["train-seg", *args]) == 2  # refuses to overwrite without --resume
    assert main(["train-seg", "--resume", *args]) == 0
    assert_same_weights(final(straight), final(resumed))
    state = final(straight)
    assert state["step"] == 4 and state["num_classes"] == 9
    assert state["arch"] == {"name": "deeplab", "kwargs": {
        "num_classes": 9, "backbone": "resnet_tiny", "layout": "torchvision",
        "msc_scales": [0.5, 0.75], "freeze_stem": False}}
    assert list((straight / "train_seg" / "tb").iterdir())


def test_head_groups_and_frozen_parts(tiny_dataset, tmp_path):
    """deeplab: everything but BN affine trains; vwe_author: ASPP biases stay 0
    (docs/segmentation.md#batch-norm, docs/segmentation.md#training-recipes)."""
    for recipe in ("deeplab", "vwe_author"):
        run_dir = tmp_path / recipe
        assert main(["train-seg", *seg_overrides(tiny_dataset, run_dir,
                                                 f"train_seg.recipe={recipe}")]) == 0
        weights = final(run_dir)["model"]
        bias = weights["aspp.branches.0.bias"]
        assert (bias.abs().sum() > 0) == (recipe == "deeplab")
        assert torch.equal(weights["backbone.bn1.weight"], torch.ones_like(
            weights["backbone.bn1.weight"]))  # frozen BN affine: never stepped


def test_accumulation_equals_one_big_batch(tiny_dataset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train-seg", *seg_overrides(tiny_dataset, one)]) == 0
    assert main(["train-seg", *seg_overrides(tiny_dataset, two,
                                             "train_seg.accumulation=2")]) == 0
    assert_same_weights(final(one), final(two), atol=2e-6)


def test_two_process_gloo_equals_one_process(tiny_dataset, tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(["train-seg", *seg_overrides(tiny_dataset, single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vwe.cli", "train-seg", *seg_overrides(tiny_dataset, double)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(final(single), final(double), atol=2e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "nan"
    assert main(["train-seg", *seg_overrides(tiny_dataset, run_dir, "train_seg.lr=1e30",
                                             "train_seg.iterations=6")]) == 2
    err = capsys.readouterr().err
    last_line = err.rstrip("\n").split("\n")[-1]  # after the progress bar's own line
    assert last_line.startswith("vwe train-seg: error:")
    last = run_dir / "train_seg" / "last.pt"
    promise = "last good checkpoint" if last.exists() else "No checkpoint was saved before it"
    assert "non-finite" in last_line and promise in last_line
    assert not (run_dir / "train_seg" / "final.pt").exists()
    if last.exists():
        floats = [v for v in load_checkpoint(last)["model"].values() if v.is_floating_point()]
        assert all(torch.isfinite(v).all() for v in floats)


@pytest.fixture()
def label_copy(tiny_dataset, tmp_path):
    labels = tmp_path / "labels"
    shutil.copytree(tiny_dataset / "SegmentationClassAug", labels)
    return labels


def _fails_cleanly(args, capsys, *fragments):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_bad_labels_stop_before_anything_is_written(tiny_dataset, tmp_path, label_copy, capsys):
    run_dir = tmp_path / "run"
    args = ["train-seg", *seg_overrides(tiny_dataset, run_dir, label_dir=label_copy)]
    victim = label_copy / "syn_000003.png"
    good = read_label_png(victim)
    save_label_png(victim, good[:-1])
    _fails_cleanly(args, capsys, "syn_000003.png", f"is {good.shape[0] - 1}x", "image")
    wrong = good.copy()
    wrong[0, 0] = 9  # 8 classes + background: ids 0..8
    save_label_png(victim, wrong)
    _fails_cleanly(args, capsys, "syn_000003.png holds id 9", "outside 0..8")
    victim.unlink()
    _fails_cleanly(args, capsys, "1 of 48 images have no label", "syn_000003")
    for path in label_copy.iterdir():
        path.unlink()
    _fails_cleanly(args, capsys, "holds no PNG label", "seg.label_dir")
    assert not (run_dir / "train_seg" / "last.pt").exists()
    assert not list((run_dir / "train_seg").glob("*.pt"))


def test_unwritable_output_folder(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train_seg").write_text("a file where the output folder should be")
    _fails_cleanly(["train-seg", *seg_overrides(tiny_dataset, run_dir)], capsys,
                   "cannot write to output folder", "train_seg")


def test_batch_must_split_over_accumulation(tiny_dataset, tmp_path, capsys):
    _fails_cleanly(["train-seg", *seg_overrides(tiny_dataset, tmp_path / "r",
                                                "train_seg.accumulation=3")],
                   capsys, "train_seg.batch_size=4", "accumulation")


class SignalAt:
    """Wraps a function: counts its calls and sends SIGINT to this process at call `at`."""

    def __init__(self, function, at, after=False):
        self.function, self.at, self.after, self.calls = function, at, after, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at and not self.after:
            os.kill(os.getpid(), signal.SIGINT)
        result = self.function(*args, **kwargs)
        if self.calls == self.at and self.after:
            os.kill(os.getpid(), signal.SIGINT)
        return result


@pytest.mark.parametrize("where", ["first-bn-of-step-2", "last-bn-of-step-3",
                                   "after-optimizer-step-3"])
def test_an_interrupt_mid_step_resumes_equal_with_training_bn_statistics(
        tiny_dataset, tmp_path, monkeypatch, capsys, where):
    """Ctrl-C inside a step (in the forward pass, after the update) finishes that step, saves it
    whole (weights, optimiser, running statistics, num_batches_tracked) and resumes equal."""
    extra = ("train_seg.recipe=vwe-author", "seg.frozen_bn=false")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    counting = SignalAt(torch.nn.functional.batch_norm, at=0)
    monkeypatch.setattr(torch.nn.functional, "batch_norm", counting)
    bn_calls_at_update = []  # BN calls so far, at each optimiser step: the step boundaries
    sgd_step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda *a, **k: (
        bn_calls_at_update.append(counting.calls), sgd_step(*a, **k))[1])
    assert main(["train-seg", *seg_overrides(tiny_dataset, straight, *extra)]) == 0
    assert len(bn_calls_at_update) == 4
    monkeypatch.undo()
    if where == "after-optimizer-step-3":
        monkeypatch.setattr(torch.optim.SGD, "step",
                            SignalAt(torch.optim.SGD.step, at=3, after=True))
        saved = 3
    else:
        at = bn_calls_at_update[0] + 1 if where == "first-bn-of-step-2" \
            else bn_calls_at_update[2]
        monkeypatch.setattr(torch.nn.functional, "batch_norm",
                            SignalAt(torch.nn.functional.batch_norm, at=at))
        saved = 2 if where == "first-bn-of-step-2" else 3
    args = seg_overrides(tiny_dataset, resumed, *extra)
    assert main(["train-seg", *args]) == 2
    err = capsys.readouterr().err
    assert f"holds step {saved}/4: rerun with --resume" in err and "Traceback" not in err
    assert load_checkpoint(resumed / "train_seg" / "last.pt")["step"] == saved
    monkeypatch.undo()
    assert main(["train-seg", "--resume", *args]) == 0
    assert_same_weights(final(straight), final(resumed))
    assert any("running_mean" in key for key in final(straight)["model"])
