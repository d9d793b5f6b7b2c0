"""import-weights + make-cam with preset ijcai-code reproduce the authors' CAM inference.

The reference (tests/authors_reference.py, shared with benchmarks/versus_reference.py) follows
docs/method.md#cam-inference step by step on a second code path: torchvision's ResNet-50
(eval-mode BN = their FixedBatchNorm, layer4 stride 1) and their classifier weight.
"""

import numpy as np
import torch

from authors_reference import authors_cam, authors_resnet
from trained_statistics import give_trained_statistics
from vwe.cli import main
from vwe.config import load_config
from vwe.data.io import load_npz, read_image
from vwe.data.voc import VocLayout
from vwe.models.authors_weights import authors_state_dict
from vwe.models.cam_net import CamNet


def test_imported_authors_checkpoint_reproduces_their_cam_inference(tiny_dataset, tmp_path):
    layout = VocLayout(tiny_dataset)
    split = tiny_dataset / "ImageSets" / "Segmentation" / "repro.txt"
    names = layout.read_split("val")[:2]
    split.write_text("\n".join(names) + "\n")
    cfg = load_config(None, ["preset=ijcai-code", "model.pretrained=none"])
    torch.manual_seed(0)
    model = CamNet(cfg.model, len(layout.class_names))
    give_trained_statistics(model)
    state = authors_state_dict(model, "ijcai-code", prefix="module.")
    torch.save(state, tmp_path / "resnet_cam_final.pth")

    dst = tmp_path / "imported.pt"
    assert main(["import-weights", "--format", "ijcai-code",
                 str(tmp_path / "resnet_cam_final.pth"), str(dst)]) == 0
    run_dir = tmp_path / "run"
    assert main(["make-cam", "preset=ijcai-code", "model.pretrained=none",
                 f"data.root={tiny_dataset}", f"run_dir={run_dir}", "cam.split=repro",
                 f"cam.checkpoint={dst}"]) == 0

    net = authors_resnet(state)
    for name in names:
        got = load_npz(run_dir / "cams" / f"{name}.npz")
        keys = torch.from_numpy(got["keys"])
        want_cam, want_high = authors_cam(net, state["module.classifier.weight"],
                                          read_image(layout.image_path(name)), keys)
        assert set(got) == {"keys", "cam", "high_res"}  # M_img only, as their code
        np.testing.assert_allclose(got["cam"], want_cam, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["high_res"], want_high, rtol=1e-4, atol=1e-5)


def test_import_rejects_wrong_version_layout(tmp_path, capsys):
    cfg = load_config(None, ["preset=vwl-m", "model.pretrained=none",
                             "model.backbone=resnet50"])
    model = CamNet(cfg.model, 3)
    torch.save(authors_state_dict(model, "vwl-m", prefix="module."), tmp_path / "mbk.pth")
    assert main(["import-weights", "--format", "ijcai-code", str(tmp_path / "mbk.pth"),
                 str(tmp_path / "out.pt")]) == 2
    assert "mbk.pth" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
