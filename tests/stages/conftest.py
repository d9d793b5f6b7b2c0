"""Fixtures for the refinement stages: a tiny trained CAM run whose CAMs cover train_aug."""

import shutil
from pathlib import Path

import pytest

from vwe.cli import main


def tiny_refine_overrides(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Tiny settings for every stage from train-cam to eval-labels (resnet_tiny, small crops)."""
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0", "device=cpu",
            "model.backbone=resnet_tiny", "model.pretrained=none", "model.num_words=16",
            "train_cam.batch_size=4", "train_cam.max_steps=6", "train_cam.crop_size=64",
            "train_cam.resize_long=[48, 96]", "train_cam.momentum=0.9",
            "cam.split=train_aug", "cam.scales=[1.0, 0.5]",
            "ir_labels.num_workers=0",
            "train_irn.backbone_init=cam", "train_irn.crop_size=64", "train_irn.radius=5",
            "train_irn.batch_size=4", "train_irn.max_steps=6", "train_irn.checkpoint_every=2",
            "train_irn.scale_range=[0.7, 1.3]", "train_irn.lr=0.05",
            "pseudo_labels.pad_size=0", *extra]


@pytest.fixture(scope="session")
def refine_overrides():
    """`refine_overrides(root, run_dir, *extra)`: tiny key=value settings for the refine stages."""
    return tiny_refine_overrides


@pytest.fixture(scope="session")
def cam_run(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory,
            single_torch_thread: None) -> Path:
    """A run dir with train_cam/final.pt and CAMs of every train_aug image (do not modify)."""
    run_dir = tmp_path_factory.mktemp("cam_run") / "run"
    assert main(["train-cam", *tiny_refine_overrides(tiny_dataset, run_dir)]) == 0
    assert main(["make-cam", *tiny_refine_overrides(tiny_dataset, run_dir)]) == 0
    return run_dir


@pytest.fixture()
def run_copy(cam_run: Path, tmp_path: Path):
    """`run_copy(*parts)`: a private copy of the CAM run (train_cam, cams, plus `parts`)."""
    def copy(*parts: str, source: Path = cam_run) -> Path:
        target = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        for part in ("train_cam", "cams", *parts):
            shutil.copytree(source / part, target / part)
        return target

    return copy


@pytest.fixture(scope="session")
def ir_run(cam_run: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CAM run plus IR labels of every train_aug image (do not modify)."""
    run_dir = tmp_path_factory.mktemp("ir_run") / "run"
    for part in ("train_cam", "cams"):
        shutil.copytree(cam_run / part, run_dir / part)
    assert main(["ir-labels", *tiny_refine_overrides(tiny_dataset, run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="session")
def irn_run(ir_run: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory,
            single_torch_thread: None) -> Path:
    """The IR-label run plus a trained IRNet (train_irn/final.pt) (do not modify)."""
    run_dir = tmp_path_factory.mktemp("irn_run") / "run"
    for part in ("train_cam", "cams", "ir_labels"):
        shutil.copytree(ir_run / part, run_dir / part)
    assert main(["train-irn", *tiny_refine_overrides(tiny_dataset, run_dir)]) == 0
    return run_dir
