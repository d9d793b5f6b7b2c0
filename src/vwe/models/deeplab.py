"""DeepLabV2 (ResNet, output stride 8, ASPP-V2, MSC) as trained on pseudo labels
(docs/segmentation.md#deeplabv2).

`build_deeplab` gives an `MSC` wrapper around a `DeepLabV2` base net whose backbone is either the
Caffe/MSRA layout (`deeplab_caffe.CaffeResNet`, loads the converted Caffe files) or the torchvision
layout (`backbone.build_backbone`, loads torchvision weights). Every batch norm is a
`FixedBatchNorm2d`: running statistics are always used, whatever `train()`/`eval()` says
(docs/segmentation.md#batch-norm). Also here: the recipes' parameter groups
(docs/segmentation.md#training-recipes) and the initialisation rules
(docs/segmentation.md#initialisation); the loss is in `models/seg_loss.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vwe.config import seg_recipe
from vwe.engine.weights import read_state_dict
from vwe.errors import VweError
from vwe.models.backbone import build_backbone, load_pretrained
from vwe.models.deeplab_caffe import (
    CAFFE_BLOCKS,
    DEEPLAB_DILATIONS,
    DEEPLAB_STRIDES,
    CaffeResNet,
    map_caffe_state_dict,
)

log = logging.getLogger(__name__)

ASPP_RATES = (6, 12, 18, 24)  # docs/segmentation.md#aspp
# output stride 16 (seg.output_stride, docs/segmentation.md#output-stride-16): half the rates
# cover the same pixels
OS16_STRIDES, OS16_DILATIONS, OS16_ASPP_RATES = (1, 2, 2, 1), (1, 1, 1, 2), (3, 6, 9, 12)
MSC_SCALES = (0.5, 0.75)  # docs/segmentation.md#msc
LAYOUTS = ("caffe", "torchvision")
# docs/segmentation.md#initialisation, pixel values 0–255, std 1
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
TORCHVISION_MEAN_RGB = (123.675, 116.28, 103.53)  # (0.485, 0.456, 0.406) × 255
TORCHVISION_STD_RGB = (58.395, 57.12, 57.375)  # (0.229, 0.224, 0.225) × 255
CAFFE_IMAGENET_FILE = ("deeplabv1_resnet101-imagenet.pth "
                       "(Google Drive id 14soMKDnIZ_crXQTlol9sNHVPozcQQpMn)")

class ASPP(nn.Module):
    """ASPP-V2: four 3×3 convs with bias, dilation = padding = rate, summed into logits
    (docs/segmentation.md#aspp)."""

    def __init__(self, in_ch: int, num_classes: int, rates: Sequence[int] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_ch, num_classes, 3, padding=rate, dilation=rate, bias=True)
            for rate in rates)
        for conv in self.branches:
            if conv.weight.is_meta:  # built for a checkpoint (docs/performance.md#start-up)
                continue
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor) -> Tensor:
        logits = self.branches[0](features)
        for conv in self.branches[1:]:
            logits = logits + conv(features)
        return logits  # (N, C, h, w) at stride 8


class DeepLabV2(nn.Module):
    """Backbone (output stride 8) + ASPP-V2; logits at stride 8, never upsampled here
    (docs/segmentation.md#aspp)."""

    def __init__(self, backbone: nn.Module, num_classes: int,
                 rates: Sequence[int] = ASPP_RATES, backbone_name: str = "resnet101",
                 layout: str = "caffe") -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone.out_channels[-1], num_classes, rates)
        self.num_classes = num_classes
        self.backbone_name = backbone_name
        self.layout = layout

    def forward(self, images: Tensor) -> Tensor:
        return self.aspp(self.backbone(images)[-1])


class MSC(nn.Module):
    """Multi-scale inputs with max fusion (docs/segmentation.md#msc).

    Training returns [L1, L_s for each scale at its own size, L_max]; eval returns L_max, the
    element-wise max of L1 and the bilinearly upsampled L_s at L1's size. No scales: L1 alone
    (as a one-element list in training).
    """

    def __init__(self, base: DeepLabV2, scales: Sequence[float] = MSC_SCALES) -> None:
        super().__init__()
        self.base = base
        self.scales = tuple(scales)

    def forward(self, images: Tensor) -> Tensor | list[Tensor]:
        logits = self.base(images)
        if not self.scales:
            return [logits] if self.training else logits
        # scale_factor (not a size) as in KZ: size ⌊s·p⌋, sampling grid at exactly 1/p
        pyramid = [self.base(F.interpolate(images, scale_factor=p, mode="bilinear",
                                           align_corners=False)) for p in self.scales]
        size = logits.shape[-2:]
        upsampled = [F.interpolate(lp, size=size, mode="bilinear", align_corners=False)
                     for lp in pyramid]
        fused = torch.stack([logits, *upsampled]).amax(dim=0)
        return [logits, *pyramid, fused] if self.training else fused


def _base(model: nn.Module) -> DeepLabV2:
    """The DeepLabV2 inside an MSC wrapper (or the model itself)."""
    base = model.base if isinstance(model, MSC) else model
    if not isinstance(base, DeepLabV2):
        raise TypeError(f"expected DeepLabV2 or MSC, got {type(model).__name__}")
    return base


def _build_trunk(name: str, layout: str, output_stride: int = 8) -> nn.Module:
    """Output-stride-8 trunk: res4 all dilation 2, res5 all dilation 4, stride 1
    (docs/segmentation.md#backbone); 16: res4 strided, res5 dilation 2 (torchvision layout)."""
    if output_stride == 16:
        if layout != "torchvision":
            raise VweError("seg.output_stride=16 needs seg.layout=torchvision")
        return build_backbone(name, strides=OS16_STRIDES, dilations=OS16_DILATIONS)
    if output_stride != 8:
        raise VweError(f"seg.output_stride={output_stride}: choose 8 (DeepLabV2) or 16")
    if layout == "caffe":
        if name not in CAFFE_BLOCKS:
            raise VweError(f"seg.backbone={name} has no Caffe layout; use one of "
                           f"{', '.join(CAFFE_BLOCKS)} or seg.layout=torchvision")
        return CaffeResNet(CAFFE_BLOCKS[name], DEEPLAB_STRIDES, DEEPLAB_DILATIONS)
    if layout == "torchvision":
        # torchvision's replace_stride_with_dilation would give the first blocks the previous
        # dilation; build_backbone sets every block of a layer to the same dilation.
        return build_backbone(name, strides=DEEPLAB_STRIDES, dilations=DEEPLAB_DILATIONS)
    raise VweError(f"seg.layout={layout} is unknown; choose caffe or torchvision")


def _freeze_stem(trunk: nn.Module) -> None:
    """Stop gradients into conv1 + bn1 (IRN's choice, irn#21; option freeze_stem,
    docs/segmentation.md#batch-norm)."""
    if isinstance(trunk, CaffeResNet):
        trunk.layer1.requires_grad_(False)
        return
    for param in trunk.stem_parameters():  # ResNet conv1 + bn1, a timm trunk's stem
        param.requires_grad_(False)


def build_deeplab(num_classes: int, backbone: str = "resnet101", layout: str = "torchvision",
                  pretrained: str = "none", msc_scales: Sequence[float] = MSC_SCALES,
                  freeze_stem: bool = False, dataset: str = "voc",
                  coco_init: bool | None = None, output_stride: int = 8) -> MSC:
    """DeepLabV2 wrapped in MSC; `pretrained` and `coco_init` as in `load_deeplab_init`."""
    rates = OS16_ASPP_RATES if output_stride == 16 else ASPP_RATES
    base = DeepLabV2(_build_trunk(backbone, layout, output_stride), num_classes, rates,
                     backbone_name=backbone, layout=layout)
    load_deeplab_init(base, pretrained, layout, dataset, coco_init)
    if freeze_stem:
        _freeze_stem(base.backbone)
    return MSC(base, msc_scales)


def input_normalization(layout: str) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    """(mean, std, bgr) for `(pixels_0_255[..., order] − mean) / std`, tied to the weights
    (docs/segmentation.md#initialisation).

    caffe: BGR, mean (104.008, 116.669, 122.675), std 1; torchvision: RGB, ImageNet mean/std ×255.
    """
    if layout == "caffe":
        return CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), True
    if layout == "torchvision":
        return TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB, False
    raise VweError(f"seg.layout={layout} is unknown; choose caffe or torchvision")



class PixelSegmenter(nn.Module):
    """RGB pixels 0–255 (N, 3, H, W) → logits (N, C, H, W) at the input size: the layout's
    normalisation, the network (MSC or not), bilinear upsampling, as infer-seg does for one
    image at scale 1 without flip (docs/segmentation.md#exported-models)."""

    def __init__(self, model: nn.Module, layout: str) -> None:
        super().__init__()
        mean, std, bgr = input_normalization(layout)
        self.model = model
        self.bgr = bgr
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, pixels: Tensor) -> Tensor:
        images = pixels.float()
        if self.bgr:
            images = images.flip(1)  # RGB → BGR
        logits = self.model((images - self.mean) / self.std)  # (N, C, h, w) at stride 8
        return F.interpolate(logits, size=pixels.shape[-2:], mode="bilinear",
                             align_corners=False)

# --------------------- losses (docs/segmentation.md#msc, docs/segmentation.md#loss-and-lr-formulas)

def resize_labels(labels: Tensor, size: Sequence[int]) -> Tensor:
    """(N, H, W) ids → `size` with nearest-exact, which equals PIL NEAREST used by KZ/RL
    (docs/segmentation.md#msc)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    resized = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest-exact")
    return resized[:, 0].to(labels.dtype)


# ----- optimiser (docs/segmentation.md#training-recipes, docs/segmentation.md#loss-and-lr-formulas)

def _conv_params(base: DeepLabV2) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Trainable (backbone conv params, ASPP weights, ASPP biases); BN affine left out
    (docs/segmentation.md#batch-norm)."""
    backbone, head_weights, head_biases = [], [], []
    for name, module in base.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        in_head = name.startswith("aspp.")
        if module.weight.requires_grad:
            (head_weights if in_head else backbone).append(module.weight)
        if module.bias is not None and module.bias.requires_grad:
            (head_biases if in_head else backbone).append(module.bias)
    return backbone, head_weights, head_biases


def param_groups(model: nn.Module, lr: float, weight_decay: float = 5e-4,
                 recipe: str = "deeplab") -> list[dict[str, Any]]:
    """SGD parameter groups with `lr_mult` for the poly schedule
    (docs/segmentation.md#training-recipes).

    deeplab: backbone convs 1× (wd), ASPP weights 10× (wd), ASPP biases 20× (wd 0).
    vwe_author: every conv weight 1× (wd); ASPP biases never trained (stay 0).
    Frozen-BN affine parameters and a frozen stem are in no group.
    """
    recipe = seg_recipe(recipe)
    backbone, head_weights, head_biases = _conv_params(_base(model))

    def group(name: str, params: list[Tensor], mult: float, wd: float) -> dict[str, Any]:
        return {"name": name, "params": params, "lr": lr * mult, "base_lr": lr, "lr_mult": mult,
                "weight_decay": wd}

    if recipe == "deeplab":
        groups = [group("backbone", backbone, 1.0, weight_decay),
                  group("aspp_weight", head_weights, 10.0, weight_decay),
                  group("aspp_bias", head_biases, 20.0, 0.0)]
    else:
        groups = [group("conv_weight", backbone + head_weights, 1.0, weight_decay)]
    return [g for g in groups if g["params"]]


# --------------------------------------------- initialisation (docs/segmentation.md#initialisation)

def looks_like_coco(path: str | Path, state: Mapping[str, Tensor]) -> bool:
    """A COCO init: "coco" in the file name or a 91-class head (KZ's converted init,
    docs/segmentation.md#initialisation)."""
    if "coco" in Path(path).name.lower():
        return True
    return any(key.endswith(("fc.weight", "aspp.c0.weight")) and value.ndim > 0
               and value.shape[0] == 91 for key, value in state.items())


def _refuse_coco(source: str, dataset_name: str) -> None:
    """COCO-pretrained DeepLab weights saw COCO pixel labels: never for COCO runs
    (docs/segmentation.md#initialisation, docs/segmentation.md#ms-coco-2014)."""
    if "coco" in dataset_name.lower():
        raise VweError(f"{source} is a COCO-pretrained initialisation, refused for the COCO "
                       f"dataset ({dataset_name}): it was trained on COCO segmentation masks. Use "
                       f"an ImageNet init: seg.pretrained=imagenet (torchvision layout) or "
                       f"{CAFFE_IMAGENET_FILE} (caffe layout)")


def _load_caffe_file(base: DeepLabV2, state: Mapping[str, Tensor], source: str) -> None:
    """Explicit key map; any missing backbone tensor or wrong shape is an error
    (docs/segmentation.md#initialisation)."""
    if any(key.startswith("backbone.") for key in state):  # written by import-weights
        mapped = {k: v for k, v in state.items() if k.startswith(("backbone.", "aspp."))}
        mapped = {k: v for k, v in mapped.items()
                  if not k.startswith("aspp.") or v.shape[0] == base.num_classes}
    else:
        mapped = map_caffe_state_dict(state, base.num_classes, source, base.backbone.blocks)
    expected = base.state_dict()
    misfit = sorted(k for k in mapped if k not in expected or mapped[k].shape != expected[k].shape)
    if misfit:
        raise VweError(f"{source} does not fit {base.backbone_name} (caffe layout): wrong shape "
                       f"or unknown key {', '.join(misfit[:6])}")
    absent = sorted(set(expected) - set(mapped))
    if any(not key.startswith("aspp.") for key in absent):
        raise ValueError(f"caffe key map incomplete: {absent[:6]}")  # a bug, not the user's
    base.load_state_dict(mapped, strict=False)
    log.info("loaded %s (%s)", source, "ASPP random" if absent else "with ASPP")


def load_deeplab_init(model: nn.Module, spec: str | None, layout: str | None = None,
                      dataset_name: str = "voc", coco_init: bool | None = None) -> None:
    """Initialise from `spec`: none | imagenet | coco | a local file
    (docs/segmentation.md#initialisation).

    A file loads in the model's layout: caffe = KZ-converted keys, torchvision = torchvision keys.
    `coco_init` says whether the file is COCO-pretrained (None: guessed by `looks_like_coco`);
    COCO-pretrained weights are refused when `dataset_name` is a COCO dataset.
    """
    base = _base(model)
    if layout is not None and layout != base.layout:
        raise ValueError(f"model is {base.layout} layout, asked to load {layout} weights")
    if spec in (None, "", "none"):
        return
    if spec == "coco":
        _refuse_coco("seg.pretrained=coco", dataset_name)
        raise VweError("seg.pretrained=coco needs the converted file: convert the DeepLab "
                       "authors' init.caffemodel with KZ's convert.py --dataset coco and pass "
                       "seg.pretrained=/path/to/deeplabv1_resnet101-coco.pth (layout caffe)")
    if spec == "imagenet":
        if base.layout == "torchvision":
            load_pretrained(base.backbone, base.backbone_name, "imagenet")
            return
        raise VweError("the Caffe ImageNet init cannot be downloaded automatically: get "
                       f"{CAFFE_IMAGENET_FILE} and pass seg.pretrained=/path/to/it, or set "
                       "seg.layout=torchvision")
    state = read_state_dict(spec)
    if coco_init is None:
        coco_init = looks_like_coco(spec, state)
    if coco_init:
        _refuse_coco(str(spec), dataset_name)
    if base.layout == "caffe":
        _load_caffe_file(base, state, str(spec))
    elif any(key.removeprefix("module.").startswith("layer1.conv1.conv") for key in state):
        raise VweError(f"{spec} is in the Caffe (KZ) layout; set seg.layout=caffe")
    else:
        load_pretrained(base.backbone, base.backbone_name, str(spec))
