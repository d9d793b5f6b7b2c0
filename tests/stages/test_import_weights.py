"""import-weights + make-cam with preset ijcai-code reproduce the authors' CAM inference.

The reference below follows docs/method.md#cam-inference step by step on a second code path:
torchvision's ResNet-50 (eval-mode BN = their FixedBatchNorm, layer4 stride 1) loaded from the
checkpoint's `resnet.*` aliases, and their classifier weight.
"""

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from vwe.cli import main
from vwe.config import load_config
from vwe.data.io import load_npz, read_image
from vwe.data.voc import VocLayout
from vwe.models.authors_weights import authors_state_dict
from vwe.models.cam_net import CamNet

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def authors_resnet(state: dict) -> torchvision.models.ResNet:
    net = torchvision.models.resnet50(weights=None)
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    resnet = {k.removeprefix("module.resnet."): v for k, v in state.items()
              if k.startswith("module.resnet.")}
    resnet.update({k: v for k, v in net.state_dict().items() if k.startswith("fc.")})
    net.load_state_dict(resnet, strict=True)
    return net.eval()


def authors_cam(net, classifier_weight, image, keys, scales=(1.0, 0.5, 1.5, 2.0)):
    h, w = image.shape[:2]
    strided = torch.zeros(classifier_weight.shape[0], (h - 1) // 4 + 1, (w - 1) // 4 + 1)
    high_res = torch.zeros(classifier_weight.shape[0], h, w)
    for s in scales:
        img = image if s == 1.0 else np.asarray(Image.fromarray(image).resize(
            (int(np.round(w * s)), int(np.round(h * s))), Image.BICUBIC))
        x = ((img / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1)
        pair = torch.from_numpy(np.stack([x, x[:, :, ::-1]]).copy())
        with torch.no_grad():
            f = pair
            for layer in (net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2,
                          net.layer3, net.layer4):
                f = layer(f)
            cam = F.relu(F.conv2d(f, classifier_weight))
        cam = torch.max(cam[0], cam[1].flip(-1))[None]
        strided += F.interpolate(cam, strided.shape[1:], mode="bilinear", align_corners=False)[0]
        high_res += F.interpolate(cam, (h, w), mode="bilinear", align_corners=False)[0]
    strided, high_res = strided[keys], high_res[keys]
    strided /= F.adaptive_max_pool2d(strided, (1, 1)) + 1e-5
    high_res /= F.adaptive_max_pool2d(high_res, (1, 1)) + 1e-5
    return strided.numpy(), high_res.numpy()


def test_imported_authors_checkpoint_reproduces_their_cam_inference(tiny_dataset, tmp_path):
    layout = VocLayout(tiny_dataset)
    split = tiny_dataset / "ImageSets" / "Segmentation" / "repro.txt"
    names = layout.read_split("val")[:2]
    split.write_text("\n".join(names) + "\n")
    cfg = load_config(None, ["preset=ijcai-code", "model.pretrained=none"])
    torch.manual_seed(0)
    model = CamNet(cfg.model, len(layout.class_names))
    for module in model.modules():  # non-trivial BN statistics, as a trained net has
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
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
