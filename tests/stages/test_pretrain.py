"""vwe pretrain: it learns the task, caches by its keys, resumes to the same weights, and every
`generated` weights key loads exactly its backbone."""

import json
from pathlib import Path

import pytest
import torch

from vwe.cli import main
from vwe.config import load_config
from vwe.engine.weights import generated_backbone_file, resolve_generated
from vwe.errors import VweError
from vwe.stage_records import stage_record

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def pretrain_args(cache: Path, *extra: str) -> list[str]:
    return [f"pretrain.cache_dir={cache}", f"run_dir={cache / 'run'}", "device=cpu",
            "model.backbone=resnet_tiny", "pretrain.num_classes=4", "pretrain.image_size=48",
            "pretrain.batch_size=16", "pretrain.steps=40", "pretrain.val_images=64",
            "pretrain.lr=0.05", "pretrain.checkpoint_every=10", "pretrain.num_workers=0",
            "data.num_workers=0", *extra]


def backbone_tensors(cfg) -> dict:
    return torch.load(generated_backbone_file(cfg, "resnet_tiny"), weights_only=True)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    cache = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", *pretrain_args(cache)]) == 0
    return cache


def test_it_learns_the_task_and_writes_a_backbone_file(pretrained):
    cfg = load_config(None, pretrain_args(pretrained))
    path = generated_backbone_file(cfg, "resnet_tiny")
    summary = json.loads((path.parent / "pretrain.json").read_text())
    assert summary["val_accuracy"] > summary["chance"] + 0.25  # 4 classes: chance 25 %
    state = backbone_tensors(cfg)
    assert "conv1.weight" in state and "layer4.0.bn2.running_var" in state
    assert not any(k.startswith(("fc.", "backbone.")) for k in state)


def test_a_second_call_is_cached_and_another_key_trains_elsewhere(pretrained):
    cfg = load_config(None, pretrain_args(pretrained))
    path = generated_backbone_file(cfg, "resnet_tiny")
    before = path.stat().st_mtime_ns
    assert main(["pretrain", *pretrain_args(pretrained)]) == 0
    assert path.stat().st_mtime_ns == before
    other = load_config(None, pretrain_args(pretrained, "pretrain.lr=0.02"))
    assert generated_backbone_file(other, "resnet_tiny") != path
    unchanged = load_config(None, pretrain_args(pretrained, "pretrain.val_images=8",
                                                "pretrain.num_workers=2"))
    assert generated_backbone_file(unchanged, "resnet_tiny") == path  # not a weights key


def test_a_resumed_pretraining_equals_an_uninterrupted_one(pretrained, tmp_path):
    # the first half with a loader process: the images, so the weights, do not depend on it
    assert main(["pretrain", *pretrain_args(tmp_path, "pretrain.stop_at_step=20",
                                            "pretrain.num_workers=1")]) == 0
    cfg = load_config(None, pretrain_args(tmp_path))
    assert not generated_backbone_file(cfg, "resnet_tiny").exists()
    assert main(["pretrain", *pretrain_args(tmp_path)]) == 0
    resumed = backbone_tensors(cfg)
    straight = backbone_tensors(load_config(None, pretrain_args(pretrained)))
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key


def test_generated_keys_load_that_backbone_and_enter_the_records(pretrained, tiny_dataset,
                                                                refine_overrides):
    run_dir = pretrained / "cam-run"
    args = [*refine_overrides(tiny_dataset, run_dir), *pretrain_args(pretrained),
            "model.pretrained=generated",
            "train_cam.max_steps=1", "train_cam.lr=1e-9", "model.frozen_bn=true",
            "model.freeze_stem=true", f"run_dir={run_dir}"]
    assert main(["train-cam", *args]) == 0
    cfg = load_config(None, args)
    backbone = backbone_tensors(cfg)
    trained = torch.load(run_dir / "train_cam" / "final.pt", weights_only=True)["model"]
    assert torch.equal(trained["backbone.conv1.weight"], backbone["conv1.weight"])  # frozen stem
    assert torch.equal(trained["backbone.bn1.running_mean"], backbone["bn1.running_mean"])
    record = stage_record(cfg, "train_cam").to_json()
    # the record names the weights by their keys and content, not by where the cache lives
    assert record["settings"]["model.pretrained"] == "generated"
    assert record["inputs"]["pretrained"].startswith("sha256:")
    other = load_config(None, [*args, "pretrain.steps=41"])
    assert stage_record(other, "train_cam") != stage_record(cfg, "train_cam")


def test_a_missing_backbone_names_the_command_that_makes_it(tmp_path):
    cfg = load_config(None, [*pretrain_args(tmp_path), "seg.pretrained=generated",
                             "seg.backbone=resnet18"])
    with pytest.raises(VweError, match=r"seg.pretrained=generated.*vwe pretrain .*"
                                       r"model.backbone=resnet18"):
        resolve_generated(cfg, require="seg")
    assert resolve_generated(cfg, require="model").seg.pretrained.endswith("backbone.pth")


def test_without_held_out_images_the_accuracy_is_null(tmp_path):
    args = pretrain_args(tmp_path, "pretrain.steps=2", "pretrain.val_images=0")
    assert main(["pretrain", *args]) == 0
    path = generated_backbone_file(load_config(None, args), "resnet_tiny")
    assert json.loads((path.parent / "pretrain.json").read_text())["val_accuracy"] is None


def test_the_cache_defaults_to_the_users_cache_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = generated_backbone_file(load_config(None, ["model.backbone=resnet_tiny"]),
                                   "resnet_tiny")
    assert path.parent.parent == tmp_path / "xdg" / "vwe" / "pretrained"
    assert path.parent.name.startswith("resnet_tiny-")


def test_a_moved_cache_with_the_same_backbone_keeps_the_run_current(pretrained, tmp_path,
                                                                     tiny_dataset,
                                                                     refine_overrides):
    args = [*refine_overrides(tiny_dataset, tmp_path / "run"), *pretrain_args(pretrained),
            "model.pretrained=generated", f"run_dir={tmp_path / 'run'}"]
    moved = tmp_path / "moved"
    source = generated_backbone_file(load_config(None, args), "resnet_tiny")
    target = generated_backbone_file(load_config(None, [*args, f"pretrain.cache_dir={moved}"]),
                                     "resnet_tiny")
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    assert stage_record(load_config(None, [*args, f"pretrain.cache_dir={moved}"]),
                        "train_cam") == stage_record(load_config(None, args), "train_cam")
    target.write_bytes(source.read_bytes()[:-8] + bytes(8))  # other weights: another record
    assert stage_record(load_config(None, [*args, f"pretrain.cache_dir={moved}"]),
                        "train_cam") != stage_record(load_config(None, args), "train_cam")
