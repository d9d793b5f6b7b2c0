"""Every network built the same way: a name and keyword arguments (as timm's `create_model`).

A checkpoint records `arch = {"name", "kwargs"}`, so `engine.checkpoint.load_trained` rebuilds
exactly the network that was trained, whatever today's config says; `pretrained` and `dataset`
only say how to initialise a network for training and are never recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from vwe.config import ModelConfig
from vwe.models.cam_net import CamNet
from vwe.models.deeplab import MSC_SCALES, build_deeplab
from vwe.models.irn import IRNet

BUILD_ONLY = ("pretrained", "dataset")  # how to initialise, not what the network is


def _cam_net(num_classes: int, pretrained: str = "none", **model: Any) -> CamNet:
    """The CAM network; `model` holds the ModelConfig keys (backbone, num_words, hspp_gamma…)."""
    return CamNet(ModelConfig(**model, pretrained=pretrained), num_classes)


def _irnet(backbone: str = "resnet50", with_displacement: bool = True,
           pretrained: str = "none") -> IRNet:
    return IRNet(backbone, pretrained=pretrained, with_displacement=with_displacement)


def _deeplab(num_classes: int, backbone: str = "resnet101", layout: str = "torchvision",
             msc_scales: Sequence[float] = MSC_SCALES, freeze_stem: bool = False,
             pretrained: str = "none", dataset: str = "voc", output_stride: int = 8) -> nn.Module:
    return build_deeplab(num_classes, backbone, layout, pretrained, list(msc_scales), freeze_stem,
                         dataset=dataset, output_stride=output_stride)


@dataclass(frozen=True)
class ModelSpec:
    """How to build one network, which part of it a checkpoint holds, and what to call it."""

    build: Callable[..., nn.Module]
    weights: Callable[[nn.Module], nn.Module]
    title: str


MODELS: dict[str, ModelSpec] = {
    "cam_net": ModelSpec(_cam_net, lambda model: model, "CAM network (train-cam)"),
    "irnet": ModelSpec(_irnet, lambda model: model, "IRNet (train-irn)"),
    "deeplab": ModelSpec(_deeplab, lambda model: model.base, "DeepLab network (train-seg)"),
}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """The network `name` built from keyword arguments (recorded ones plus build-only ones)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name].build(**kwargs)


def arch_entry(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of its network: the name and the architecture's kwargs."""
    return {"name": name, "kwargs": {k: v for k, v in kwargs.items() if k not in BUILD_ONLY}}


def saved_part(name: str, model: nn.Module) -> nn.Module:
    """The module whose state dict a checkpoint of `name` holds (DeepLab: the base net)."""
    return MODELS[name].weights(model)
