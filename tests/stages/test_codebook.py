"""vwe codebook: word usage and purity equal a count over the network's own word labels, and the
gallery shows each listed word's best patches."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vwe.cli import main
from vwe.data.io import read_image
from vwe.data.transforms import normalize
from vwe.data.voc import VocLayout
from vwe.engine.checkpoint import load_trained

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_usage_and_purity_by_a_second_count(cam_run, tiny_dataset, refine_overrides, tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "train_cam").mkdir(parents=True)
    checkpoint = run_dir / "train_cam" / "final.pt"
    checkpoint.write_bytes((cam_run / "train_cam" / "final.pt").read_bytes())
    assert main(["codebook", *refine_overrides(tiny_dataset, run_dir), "codebook.words=5",
                 "codebook.patches=3"]) == 0
    report = json.loads((run_dir / "codebook" / "codebook.json").read_text())
    layout = VocLayout(tiny_dataset)
    model = load_trained(checkpoint, "cam_net").model
    counts: dict[int, dict[int, int]] = {}
    for name in layout.read_split("train"):
        image = read_image(layout.image_path(name))
        x = torch.from_numpy(normalize(image).transpose(2, 0, 1).copy())[None]
        with torch.no_grad():
            labels = model(x).word_labels[0].numpy()
        mask = layout.read_mask(name)
        for (r, c), word in np.ndenumerate(labels):
            cls = int(mask[min(16 * r + 8, mask.shape[0] - 1), min(16 * c + 8, mask.shape[1] - 1)])
            per_class = counts.setdefault(int(word), {})
            per_class[cls] = per_class.get(cls, 0) + 1
    total = sum(sum(v.values()) for v in counts.values())
    assert report["positions"] == total and report["used_words"] == len(counts)
    assert len(report["words"]) == min(5, len(counts))
    for entry in report["words"]:
        mine = counts[entry["word"]]
        known = {c: n for c, n in mine.items() if c != 255}
        assert entry["usage"] == pytest.approx(sum(mine.values()) / total)
        if known:
            assert entry["purity"] == pytest.approx(max(known.values()) / sum(known.values()))
    usages = [w["usage"] for w in report["words"]]
    assert usages == sorted(usages, reverse=True)
    gallery = Image.open(run_dir / "codebook" / "gallery.png")
    assert gallery.size[1] >= len(report["words"]) * 48
