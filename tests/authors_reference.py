"""The authors' CAM inference re-implemented on a second code path, shared by
tests/stages/test_import_weights.py (equal to ours at 1e-5) and benchmarks/versus_reference.py
(the "reference" column of the speed table, docs/performance.md#versus-reference).

It follows docs/method.md#cam-inference step by step with torchvision's ResNet-50 (eval-mode BN =
their FixedBatchNorm, layer4 stride 1) loaded from a checkpoint's `resnet.*` aliases, and their
classifier weight. Written from the method description, not copied from their code.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SCALES = (1.0, 0.5, 1.5, 2.0)


def authors_resnet(state: dict) -> torchvision.models.ResNet:
    """torchvision ResNet-50 with layer4 at stride 1, weights from `module.resnet.*` keys."""
    net = torchvision.models.resnet50(weights=None)
    net.layer4[0].conv2.stride = (1, 1)
    net.layer4[0].downsample[0].stride = (1, 1)
    resnet = {k.removeprefix("module.resnet."): v for k, v in state.items()
              if k.startswith("module.resnet.")}
    resnet.update({k: v for k, v in net.state_dict().items() if k.startswith("fc.")})
    net.load_state_dict(resnet, strict=True)
    return net.eval()


def authors_cam(net: torchvision.models.ResNet, classifier_weight: torch.Tensor,
                image: np.ndarray, keys, scales=SCALES) -> tuple[np.ndarray, np.ndarray]:
    """(strided (K, ⌈H/4⌉, ⌈W/4⌉), high_res (K, H, W)) CAMs of one uint8 image, max flip fusion."""
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
