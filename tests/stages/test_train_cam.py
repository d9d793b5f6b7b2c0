"""train-cam: resume equals an uninterrupted run; 2-process gloo DDP equals 1 process;
a non-finite loss stops the run and keeps the last good checkpoint."""

import os
import subprocess
import sys

import pytest
import torch

from vwe.cli import main
from vwe.engine.checkpoint import load_checkpoint


def tiny_overrides(root, run_dir, *extra):
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0",
            "model.backbone=resnet_tiny", "model.pretrained=none", "model.num_words=16",
            "train_cam.batch_size=4", "train_cam.epochs=2", "train_cam.max_steps=6",
            "train_cam.crop_size=64", "train_cam.resize_long=[48, 96]",
            "train_cam.checkpoint_every=2", "train_cam.momentum=0.9", *extra]


def final_weights(run_dir):
    return load_checkpoint(run_dir / "train_cam" / "final.pt")


def assert_same_state(a, b, atol=0.0):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=atol, rtol=0)
    if "codebook" in a:
        torch.testing.assert_close(a["codebook"], b["codebook"], atol=atol, rtol=0)


@pytest.mark.parametrize("preset", ["paper", "vwl-m"])
def test_resume_equals_uninterrupted(tiny_dataset, tmp_path, preset):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train-cam", *tiny_overrides(tiny_dataset, straight, f"preset={preset}")]) == 0
    args = tiny_overrides(tiny_dataset, resumed, f"preset={preset}")
    assert main(["train-cam", *args, "train_cam.stop_at_step=3"]) == 0
    assert load_checkpoint(resumed / "train_cam" / "last.pt")["step"] == 3
    assert not (resumed / "train_cam" / "final.pt").exists()
    assert main(["train-cam", *args]) == 2  # refuses to overwrite without --resume
    assert main(["train-cam", "--resume", *args]) == 0
    assert_same_state(final_weights(straight), final_weights(resumed))
    trained = final_weights(straight)["model"]
    assert trained["classifier.weight"].abs().sum() > 0


def test_training_changes_only_trainable_parts(tiny_dataset, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train-cam", *tiny_overrides(tiny_dataset, run_dir)]) == 0
    state = final_weights(run_dir)
    torch.manual_seed(1)  # the stage seeds with cfg.seed (1) before building the model
    from vwe.config import load_config
    from vwe.models.cam_net import CamNet

    cfg = load_config(None, tiny_overrides(tiny_dataset, run_dir))
    init = CamNet(cfg.model, len(state["class_names"])).state_dict()
    assert torch.equal(init["backbone.layer1.0.conv1.weight"],
                       state["model"]["backbone.layer1.0.conv1.weight"])  # detached: frozen
    assert torch.equal(init["backbone.conv1.weight"], state["model"]["backbone.conv1.weight"])
    assert not torch.equal(init["backbone.layer3.0.conv1.weight"],
                           state["model"]["backbone.layer3.0.conv1.weight"])
    assert (run_dir / "configs" / "train-cam.yaml").exists()
    assert list((run_dir / "train_cam" / "tb").iterdir())


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "nan"
    args = tiny_overrides(tiny_dataset, run_dir, "train_cam.lr=1e30")
    assert main(["train-cam", *args]) == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "Traceback" not in err
    last = run_dir / "train_cam" / "last.pt"
    assert "non-finite" in error_lines[0]
    promise = "last good checkpoint" if last.exists() else "No checkpoint was saved before it"
    assert promise in error_lines[0]
    assert not (run_dir / "train_cam" / "final.pt").exists()
    if last.exists():  # whatever was saved is finite
        state = load_checkpoint(last)
        floats = [v for v in state["model"].values() if v.is_floating_point()]
        assert all(torch.isfinite(v).all() for v in floats)


@pytest.mark.parametrize("preset", ["paper", "vwl-m"])
def test_two_process_gloo_equals_one_process(tiny_dataset, tmp_path, preset):
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(["train-cam", *tiny_overrides(tiny_dataset, single, f"preset={preset}")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vwe.cli", "train-cam", "device=cpu",
           *tiny_overrides(tiny_dataset, double, f"preset={preset}")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_state(final_weights(single), final_weights(double), atol=2e-5)


@pytest.mark.usefixtures("single_torch_thread")
def test_channels_last_trains_the_same_network_to_float_rounding_and_resumes(tiny_dataset,
                                                                            tmp_path):
    plain, layout = tmp_path / "plain", tmp_path / "channels_last"
    assert main(["train-cam", *tiny_overrides(tiny_dataset, plain)]) == 0
    args = tiny_overrides(tiny_dataset, layout, "train_cam.channels_last=true")
    assert main(["train-cam", *args, "train_cam.stop_at_step=3"]) == 0
    assert main(["train-cam", "--resume", *args]) == 0
    trained = final_weights(layout)["model"]
    assert trained["backbone.layer1.0.conv1.weight"].is_contiguous(
        memory_format=torch.channels_last)
    assert_same_state(final_weights(plain), final_weights(layout), atol=1e-4)


@pytest.mark.slow
@pytest.mark.usefixtures("single_torch_thread")
def test_compile_trains_the_same_network_to_float_rounding(tiny_dataset, tmp_path):
    """Slow: inductor compiles the forward and backward first (about a minute on one core)."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    assert main(["train-cam", *tiny_overrides(tiny_dataset, eager)]) == 0
    assert main(["train-cam", *tiny_overrides(tiny_dataset, compiled,
                                              "train_cam.compile=true")]) == 0
    assert_same_state(final_weights(eager), final_weights(compiled), atol=1e-4)


def test_a_recipe_in_steps_runs_exactly_that_many_whatever_the_dataset(tiny_dataset, tmp_path,
                                                                       capsys):
    """train_cam.steps=3 with epochs=1 (and no cap): 3 steps, said when training starts;
    the record of a run without the key is unchanged (steps left out of it while 0)."""
    from vwe.config import load_config
    from vwe.stage_records import stage_record

    args = [a for a in tiny_overrides(tiny_dataset, tmp_path / "run") if "max_steps" not in a]
    assert main(["train-cam", *args, "train_cam.epochs=1", "train_cam.steps=3"]) == 0
    assert final_weights(tmp_path / "run")["step"] == 3
    assert "train-cam: 3 steps of batch 4" in capsys.readouterr().err
    settings = stage_record(load_config(None, args), "train_cam").settings
    assert "train_cam.steps" not in settings and "train_cam.epochs" in settings
