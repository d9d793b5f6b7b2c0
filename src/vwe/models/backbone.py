"""ResNet backbones with frozen batch-norm statistics (docs/method.md#backbone).

Parameter names follow torchvision (`conv1, bn1, layer1..layer4`, blocks with `conv1, bn1, …,
downsample.0/1`) so torchvision state dicts load key for key; there is no `fc`.
The stem (7×7 conv stride 2 + 3×3 max-pool stride 2) always gives stride 4; `strides` and
`dilations` set layer1..layer4. Every downsampling rounds up: a side H becomes ⌈H/2⌉.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vwe.engine.weights import imagenet_state_dict, load_state_strictly, read_state_dict
from vwe.errors import VweError

log = logging.getLogger(__name__)

# authors' CAM net: output stride 16, no dilation (docs/method.md#backbone)
CAM_STRIDES = (1, 2, 2, 1)
CAM_DILATIONS = (1, 1, 1, 1)


class FixedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always uses its running statistics and never updates them
    (docs/method.md#backbone).

    The affine weight and bias stay trainable parameters; the `training` flag has no effect.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)


def init_resnet_weights(model: nn.Module) -> None:
    """torchvision's init: kaiming-normal (fan_out) convs, BN weight 1 and bias 0; only matters
    without pretrained weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m.weight.is_meta:  # built for a checkpoint (docs/performance.md#start-up)
                continue
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def use_batch_statistics(module: nn.Module) -> nn.Module:
    """Swap every FixedBatchNorm2d for an ordinary BatchNorm2d (same parameters and buffers).

    For training from random initialisation (the CPU demo): with no ImageNet statistics to
    freeze, batch statistics are what keeps activations in range. A timm backbone keeps its
    modules and stops holding its batch norm in eval.
    """
    if hasattr(module, "frozen_bn"):  # TimmBackbone
        module.frozen_bn = False
        return module
    for name, child in module.named_children():
        if isinstance(child, FixedBatchNorm2d):
            plain = nn.BatchNorm2d(child.num_features, eps=child.eps)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            use_batch_statistics(child)
    return module


class FoldedConv2d(nn.Conv2d):
    """A conv with its batch norm folded in, for inference (docs/performance.md#make-cam).

    On the CPU in float32 it calls oneDNN, as PyTorch itself does with more than one thread or
    a batch of 16; with one thread and a small batch PyTorch sends 1×1 convs to im2col + BLAS
    instead, which on AMD CPUs runs MKL's generic path at about a third of oneDNN's rate
    (make-cam 1.5× faster, CAMs as close to float64 as before). Under autocast, tracing or
    compiling, and for other devices and dtypes, it is an ordinary conv.
    """

    def forward(self, x: Tensor) -> Tensor:
        if _onednn_applies(x) and self.padding_mode == "zeros" \
                and not isinstance(self.padding, str):
            return torch.ops.aten.mkldnn_convolution(x, self.weight, self.bias, self.padding,
                                                     self.stride, self.dilation, self.groups)
        return super().forward(x)


def _onednn_applies(x: Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting())


def _folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode BN as one conv: W·γ/√(σ²+ε), bias β − μ·γ/√(σ²+ε), computed
    in float64 and rounded once, so folding adds no more than one rounding per weight."""
    scale = bn.weight.detach().double() / (bn.running_var.double() + bn.eps).sqrt()
    folded = FoldedConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          padding_mode=conv.padding_mode,
                          device="meta")  # no initialisation: both tensors are assigned
    bias = bn.bias.detach().double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach().double() * scale
    dtype = conv.weight.dtype
    folded.weight = nn.Parameter((conv.weight.detach().double() * scale.view(-1, 1, 1, 1))
                                 .to(dtype), requires_grad=False)
    folded.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return folded


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every (conv, batch norm) pair of the ResNet trunks in `model` into one conv, in place,
    for inference only (docs/performance.md#make-cam): the frozen statistics make it the same
    affine map (float rounding apart), one pass over memory instead of two.

    The model must be in eval mode (its BN then uses running statistics, as FixedBatchNorm2d
    always does); it is left in eval mode with every parameter frozen, and its state dict no
    longer loads a checkpoint, so call it after loading.
    """
    if model.training:
        raise ValueError("fold_batch_norm is for inference: call model.eval() first")
    for module in list(model.modules()):
        if isinstance(module, ResNet):
            pairs = [(module, "conv1", "bn1")]
        elif isinstance(module, BasicBlock | Bottleneck):
            pairs = [(module, f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(module, f"bn{i}")]
            if module.downsample is not None:
                pairs.append((module.downsample, "0", "1"))
        else:
            continue
        for parent, conv_name, bn_name in pairs:
            bn = getattr(parent, bn_name)
            if isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, _folded_conv(getattr(parent, conv_name), bn))
                setattr(parent, bn_name, nn.Identity())
    return model.requires_grad_(False)


def _downsample(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """1×1 strided conv + BN on the residual path when the shape changes (torchvision layout)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                         FixedBatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn1 = FixedBatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = FixedBatchNorm2d(planes)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as torchvision: no fresh buffer per block
        return self.relu(out)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, "v1.5") → 1×1 ×4 with a residual (ResNet-50/101,
    docs/method.md#backbone)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = FixedBatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = FixedBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = FixedBatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_ch, out_ch, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as torchvision: no fresh buffer per block
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet trunk returning the stem and every layer's output.

    `strides`/`dilations` are per layer (layer1, layer2, layer3, layer4); each dilation applies to
    every block of its layer. The stem is always stride 4. CAM net: strides (1, 2, 2, 1), dilations
    (1, 1, 1, 1) → output stride 16 (docs/method.md#backbone). DeepLab: (1, 2, 1, 1), (1, 1, 2, 4) →
    8.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: list[int],
                 strides: tuple[int, int, int, int] = CAM_STRIDES,
                 dilations: tuple[int, int, int, int] = CAM_DILATIONS, width: int = 64) -> None:
        super().__init__()
        if len(layers) != 4 or len(strides) != 4 or len(dilations) != 4:
            raise ValueError("layers, strides and dilations need one entry per layer (4)")
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = FixedBatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.out_channels = [width]
        in_ch = width
        for i, (blocks, stride, dilation) in enumerate(zip(layers, strides, dilations)):
            planes = width * 2**i
            layer = [block(in_ch, planes, stride, dilation)]
            in_ch = planes * block.expansion
            layer += [block(in_ch, planes, 1, dilation) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.out_channels.append(in_ch)
        self.reductions = [4, 4]  # stem, layer1
        for stride in strides[1:]:
            self.reductions.append(self.reductions[-1] * stride)
        init_resnet_weights(self)

    def stem_parameters(self) -> list[nn.Parameter]:
        """conv1 + bn1 (the freeze_stem options)."""
        return [*self.conv1.parameters(), *self.bn1.parameters()]

    def parameters_through(self, level: int) -> list[nn.Parameter]:
        """Parameters of the stem and layer1..layer`level` (2: the stage-2 detach)."""
        layers = [self.layer1, self.layer2, self.layer3, self.layer4][:level]
        return [*self.stem_parameters(), *(p for layer in layers for p in layer.parameters())]

    def stem(self, x: Tensor) -> Tensor:
        """conv1 + bn1 + relu + maxpool: stride 4."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> list[Tensor]:
        """Outputs of [stem, layer1, layer2, layer3, layer4]."""
        outs = [self.stem(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            outs.append(layer(outs[-1]))
        return outs


# name → (block, blocks per layer, base width)
ARCHITECTURES: dict[str, tuple[type[BasicBlock | Bottleneck], list[int], int]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 64),
    "resnet34": (BasicBlock, [3, 4, 6, 3], 64),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 64),
    "resnet101": (Bottleneck, [3, 4, 23, 3], 64),
    "resnet_tiny": (BasicBlock, [1, 1, 1, 1], 16),  # CPU demo; no ImageNet weights exist
}


def build_backbone(name: str, strides: tuple[int, int, int, int] = CAM_STRIDES,
                   dilations: tuple[int, int, int, int] = CAM_DILATIONS,
                   pretrained: str = "none") -> nn.Module:
    """A named backbone: the project's ResNets, else any timm CNN (models/timm_backbone.py).

    `strides`/`dilations` are per layer1..layer4 of a ResNet (the stem is always /4); a timm
    network gets the same output stride, 4·∏strides, through timm's dilation.
    `pretrained`: "none", "imagenet" or a path to a local file.
    """
    if name not in ARCHITECTURES:
        from vwe.models.timm_backbone import TimmBackbone, is_timm_name

        if not is_timm_name(name):
            raise VweError(f"unknown backbone '{name}' (model.backbone / seg.backbone); choose "
                           f"one of {', '.join(ARCHITECTURES)} or a timm CNN such as "
                           "efficientnet_lite0")
        timm_model = TimmBackbone(name, output_stride=4 * math.prod(strides))
        timm_model.load_pretrained(pretrained)
        return timm_model
    block, layers, width = ARCHITECTURES[name]
    model = ResNet(block, layers, tuple(strides), tuple(dilations), width)
    load_pretrained(model, name, pretrained)
    return model


def clean_backbone_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a DataParallel `module.` prefix and the classifier `fc.*` (docs/method.md#backbone)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            out[key] = value
    return out


def load_pretrained(model: nn.Module, name: str, spec: str) -> None:
    """Load `spec` ("none" | "imagenet" | path) into `model` with a strict key check."""
    if spec in ("none", "", None):
        return
    if not isinstance(model, ResNet):
        model.load_pretrained(spec)  # TimmBackbone
        return
    source = f"ImageNet weights of {name}" if spec == "imagenet" else str(spec)
    state = imagenet_state_dict(name) if spec == "imagenet" else read_state_dict(spec)
    load_state_strictly(model, clean_backbone_keys(state), f"{source} (backbone {name})")
    log.info("loaded backbone weights from %s", source)
