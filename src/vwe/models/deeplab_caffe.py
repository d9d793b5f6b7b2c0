"""Caffe/MSRA-layout ResNet for DeepLabV2 and the converted Caffe weights' key map
(docs/segmentation.md#backbone).

Parameter names are those of the converted files (`deeplabv1_resnet101-coco.pth`,
`deeplabv1_resnet101-imagenet.pth`): stem `layer1.conv1.{conv,bn}.*`, stages
`layer{2..5}.block{k}.{reduce,conv3x3,increase,shortcut}.{conv,bn}.*`, so those files load key for
key under the `backbone.` prefix. The stride sits on the 1×1 "reduce" conv (and the shortcut) and
the stem max-pool rounds up (ceil mode): a side s gives ⌊(s−1)/2⌋+1, ⌈(n−1)/2⌉+1, ⌊(n−1)/2⌋+1.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from vwe.errors import VweError
from vwe.models.backbone import FixedBatchNorm2d, init_resnet_weights

log = logging.getLogger(__name__)

CAFFE_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}
DEEPLAB_STRIDES = (1, 2, 1, 1)  # res2..res5: output stride 8 (docs/segmentation.md#backbone)
DEEPLAB_DILATIONS = (1, 1, 2, 4)  # every block of res4 / res5 (docs/segmentation.md#backbone)
CONV_BN_KEYS = ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
BN_COUNTER = "bn.num_batches_tracked"  # optional in files: filled with 0 when absent
BACKBONE_PREFIX = "backbone."
ASPP_FILE_KEY = re.compile(r"^aspp\.c(\d+)\.(weight|bias)$")  # KZ's ASPP: aspp.c0 .. aspp.c3


class ConvBn(nn.Module):
    """Conv (no bias) → frozen BN → optional ReLU; the KZ `conv`/`bn` pair
    (docs/segmentation.md#backbone)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        padding = dilation * (kernel // 2)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding,
                              dilation=dilation, bias=False)
        self.bn = FixedBatchNorm2d(out_ch)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return torch.relu(x) if self.relu else x


class CaffeBottleneck(nn.Module):
    """1×1 reduce (strided) → 3×3 (dilated) → 1×1 increase, plus shortcut (Caffe "v1",
    docs/segmentation.md#backbone)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dilation: int,
                 shortcut: bool) -> None:
        super().__init__()
        mid_ch = out_ch // 4
        self.reduce = ConvBn(in_ch, mid_ch, 1, stride=stride)
        self.conv3x3 = ConvBn(mid_ch, mid_ch, 3, dilation=dilation)
        self.increase = ConvBn(mid_ch, out_ch, 1, relu=False)
        self.shortcut = ConvBn(in_ch, out_ch, 1, stride=stride, relu=False) if shortcut else None

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.increase(self.conv3x3(self.reduce(x)))
        return torch.relu(out + identity)


class CaffeStem(nn.Module):
    """7×7/2 conv + BN + ReLU, then 3×3/2 max-pool with pad 1 in ceil mode
    (docs/segmentation.md#backbone)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = ConvBn(3, width, 7, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.conv1(x))


class CaffeResNet(nn.Module):
    """MSRA ResNet trunk; forward returns [stem, res2, res3, res4, res5] like `backbone.ResNet`.

    `dilations` apply to every block of a stage; the first block of each stage has the shortcut.
    `width` (64 for the real nets) only exists so tests can run the full depth cheaply.
    """

    def __init__(self, blocks: Sequence[int] = CAFFE_BLOCKS["resnet101"],
                 strides: Sequence[int] = DEEPLAB_STRIDES,
                 dilations: Sequence[int] = DEEPLAB_DILATIONS, width: int = 64) -> None:
        super().__init__()
        if not len(blocks) == len(strides) == len(dilations) == 4:
            raise ValueError("blocks, strides and dilations need one entry per stage (4)")
        self.blocks = tuple(blocks)
        self.layer1 = CaffeStem(width)
        self.out_channels = [width]
        in_ch = width
        for i, (count, stride, dilation) in enumerate(zip(blocks, strides, dilations)):
            out_ch = width * 4 * 2**i
            stage = OrderedDict()
            for k in range(count):
                stage[f"block{k + 1}"] = CaffeBottleneck(
                    in_ch if k == 0 else out_ch, out_ch, stride if k == 0 else 1, dilation,
                    shortcut=k == 0)
            self.add_module(f"layer{i + 2}", nn.Sequential(stage))
            self.out_channels.append(out_ch)
            in_ch = out_ch
        init_resnet_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [self.layer1(x)]
        for stage in (self.layer2, self.layer3, self.layer4, self.layer5):
            outs.append(stage(outs[-1]))
        return outs


def caffe_backbone_keys(blocks: Sequence[int] = CAFFE_BLOCKS["resnet101"],
                        counters: bool = False) -> list[str]:
    """The converted files' backbone keys (docs/segmentation.md#backbone pattern); `counters` adds
    num_batches_tracked."""
    suffixes = CONV_BN_KEYS + ((BN_COUNTER,) if counters else ())
    units = ["layer1.conv1"]
    for stage, count in enumerate(blocks, start=2):
        for k in range(1, count + 1):
            names = ("reduce", "conv3x3", "increase") + (("shortcut",) if k == 1 else ())
            units += [f"layer{stage}.block{k}.{name}" for name in names]
    return [f"{unit}.{suffix}" for unit in units for suffix in suffixes]


def _strip_prefix(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Drop a DataParallel `module.` prefix; refuse KZ's VOC-trained MSC release
    (docs/segmentation.md#initialisation)."""
    out = {key.removeprefix("module."): value for key, value in state.items()}
    if any(key.startswith(("base.layer", "base.aspp")) for key in out):
        raise VweError(f"{source} has `base.`-prefixed keys: it looks like KZ's "
                       "deeplabv2_resnet101_msc-vocaug release, trained on VOC ground-truth masks "
                       "(a leak for WSSS). Use deeplabv1_resnet101-imagenet.pth or -coco.pth")
    return out


def map_caffe_state_dict(state: Mapping[str, Tensor], num_classes: int | None = None,
                         source: str = "the state dict",
                         blocks: Sequence[int] = CAFFE_BLOCKS["resnet101"]) -> dict[str, Tensor]:
    """Converted Caffe (KZ layout) weights → our DeepLabV2 keys; every backbone tensor required.

    Backbone keys gain `backbone.`; `aspp.c{i}.*` become `aspp.branches.{i}.*` and are kept only
    when their class count equals `num_classes` (the COCO file's 91-class `fc` head and a foreign
    ASPP are dropped, docs/segmentation.md#initialisation). num_batches_tracked is filled with 0
    when the file lacks it.
    """
    state = _strip_prefix(state, source)
    required = caffe_backbone_keys(blocks)
    missing = [key for key in required if key not in state]
    if missing:
        raise VweError(f"{source} lacks {len(missing)} backbone tensor(s) of the Caffe layout: "
                       f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}; pass the "
                       "converted deeplabv1_resnet101-{imagenet,coco}.pth or set seg.layout")
    mapped = {BACKBONE_PREFIX + key: state[key] for key in required}
    for unit_key in required[::len(CONV_BN_KEYS)]:  # one per conv/bn unit
        counter = unit_key.removesuffix("conv.weight") + BN_COUNTER
        mapped[BACKBONE_PREFIX + counter] = state.get(counter, torch.tensor(0, dtype=torch.long))
    mapped.update(_map_aspp(state, num_classes, source))
    ignored = sorted(set(state) - set(caffe_backbone_keys(blocks, counters=True))
                     - {k for k in state if ASPP_FILE_KEY.match(k)})
    if ignored:
        log.info("%s: ignoring %d key(s) outside backbone/ASPP: %s", source, len(ignored),
                 ", ".join(ignored[:6]))
    return mapped


def _map_aspp(state: Mapping[str, Tensor], num_classes: int | None,
              source: str) -> dict[str, Tensor]:
    """KZ's `aspp.c{i}.{weight,bias}` → `aspp.branches.{i}.*` when the class count fits."""
    out = {}
    for key, value in state.items():
        match = ASPP_FILE_KEY.match(key)
        if match is None:
            continue
        if num_classes is not None and value.shape[0] != num_classes:
            log.info("%s: dropping %s (%d classes, model has %d)", source, key, value.shape[0],
                     num_classes)
            continue
        out[f"aspp.branches.{match.group(1)}.{match.group(2)}"] = value
    return out
