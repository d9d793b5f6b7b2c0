"""train-irn: resume equals an uninterrupted run; 2-process gloo DDP equals 1 process; the frozen
backbone is the CAM network's; the mean-shift buffer equals IRNet's batch-mean computation."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vwe.cli import main
from vwe.data.io import read_image
from vwe.data.transforms import normalize
from vwe.engine.checkpoint import load_checkpoint
from vwe.models.irn import IRNet

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def final_state(run_dir):
    return load_checkpoint(run_dir / "train_irn" / "final.pt")


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def hand_mean_shift(model_state, root, batch=4, crop=64):
    """IRNet docs/refinement.md#displacement-mean written out: mean over full batches of the batch
    mean of D on top-left crops."""
    model = IRNet("resnet_tiny", with_displacement=True)
    state = dict(model_state)
    state.update({k: torch.zeros(2) for k in state if k.endswith("running_mean")
                  and k.startswith("disp_head")})
    model.load_state_dict(state)
    model.eval()
    names = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    batch_means = []
    for start in range(0, len(names) // batch * batch, batch):
        crops = []
        for name in names[start:start + batch]:
            image = normalize(read_image(root / "JPEGImages" / f"{name}.jpg"))[:crop, :crop]
            canvas = np.zeros((crop, crop, 3), np.float32)
            canvas[:image.shape[0], :image.shape[1]] = image
            crops.append(canvas.transpose(2, 0, 1))
        with torch.no_grad():
            _, disp = model(torch.from_numpy(np.stack(crops)))
        batch_means.append(disp.mean(dim=(0, 2, 3)))
    return torch.stack(batch_means).mean(dim=0)


def test_resume_equals_uninterrupted(tiny_dataset, run_copy, ir_run, refine_overrides):
    straight, resumed = run_copy("ir_labels", source=ir_run), run_copy("ir_labels", source=ir_run)
    assert main(["train-irn", *refine_overrides(tiny_dataset, straight)]) == 0
    args = refine_overrides(tiny_dataset, resumed)
    assert main(["train-irn", *args, "train_irn.stop_at_step=3"]) == 0
    assert load_checkpoint(resumed / "train_irn" / "last.pt")["step"] == 3
    assert not (resumed / "train_irn" / "final.pt").exists()
    assert main(["train-irn", *args]) == 2  # refuses to overwrite without --resume
    assert main(["train-irn", "--resume", *args]) == 0
    state = final_state(straight)
    assert_same_weights(state["model"], final_state(resumed)["model"])
    assert state["step"] == 6 and state["arch"] == {
        "name": "irnet", "kwargs": {"backbone": "resnet_tiny", "with_displacement": True}}
    cam = load_checkpoint(ir_run / "train_cam" / "final.pt")["model"]
    for key, value in state["model"].items():  # backbone_init=cam: the CAM backbone, frozen
        if key.startswith("backbone."):
            torch.testing.assert_close(value, cam[key], rtol=0, atol=0)
    torch.manual_seed(1)
    init = IRNet("resnet_tiny").state_dict()
    assert not torch.equal(init["edge_classifier.weight"], state["model"]["edge_classifier.weight"])
    mean = state["model"]["disp_head.2.running_mean"]
    assert mean.abs().sum() > 0
    torch.testing.assert_close(mean, hand_mean_shift(state["model"], tiny_dataset),
                               rtol=1e-5, atol=1e-6)
    assert list((straight / "train_irn" / "tb").iterdir())


def test_two_process_gloo_equals_one_process(tiny_dataset, run_copy, ir_run, refine_overrides):
    single, double = run_copy("ir_labels", source=ir_run), run_copy("ir_labels", source=ir_run)
    assert main(["train-irn", *refine_overrides(tiny_dataset, single)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vwe.cli", "train-irn", *refine_overrides(tiny_dataset, double)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(final_state(single)["model"], final_state(double)["model"], atol=2e-5)


def test_without_displacement(tiny_dataset, run_copy, ir_run, refine_overrides):
    run_dir = run_copy("ir_labels", source=ir_run)
    args = refine_overrides(tiny_dataset, run_dir, "train_irn.with_displacement=false",
                            "train_irn.max_steps=2")
    assert main(["train-irn", *args]) == 0
    state = final_state(run_dir)
    assert not any(k.startswith("disp_") for k in state["model"])
    assert state["arch"]["kwargs"]["with_displacement"] is False


@pytest.mark.parametrize("setting, needle", [
    ("train_irn.crop_size=66", "multiple of 4"),
    ("train_irn.radius=12", "do not fit"),
    ("train_irn.batch_size=100", "fewer than"),
    ("train_irn.scale_range=[1.5, 0.5]", "scale_range"),
    ("train_irn.backbone=resnet18", "resnet_tiny"),
])
def test_bad_settings(tiny_dataset, run_copy, ir_run, refine_overrides, capsys, setting, needle):
    run_dir = run_copy("ir_labels", source=ir_run)
    assert main(["train-irn", *refine_overrides(tiny_dataset, run_dir, setting)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (run_dir / "train_irn").exists()


def test_missing_ir_labels(tiny_dataset, run_copy, refine_overrides, capsys):
    run_dir = run_copy()
    assert main(["train-irn", *refine_overrides(tiny_dataset, run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ir-labels" in err and "not found" in err
