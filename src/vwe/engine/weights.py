"""Reading weights from outside: torchvision's ImageNet weights and a user's local file.

The networks in `models/` receive these tensors; this module is where the files and the
download are (weights_only=True: a weights file is never unpickled).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from vwe.errors import VweError, one_line


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 weights (the authors' resnet50-19c8e357 / resnet101-5d3b4d8f)."""
    if name not in ("resnet18", "resnet34", "resnet50", "resnet101"):
        raise VweError(f"no ImageNet weights exist for backbone '{name}'; "
                       "set model.pretrained=none or a local .pth file")
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        return weights.get_state_dict(progress=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise VweError(f"could not download ImageNet weights for {name} ({err}); offline? pass "
                       f"model.pretrained=/path/to/{name}-*.pth or model.pretrained=none") from None


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a local weights file (bare, or under "state_dict"/"model"), read with
    weights_only=True: the one way every model loads a user's file."""
    path = Path(path)
    if not path.is_file():
        raise VweError(f"weights file {path} not found (model.pretrained / seg.pretrained); "
                       "pass an existing .pth file, imagenet or none")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix
        raise VweError(f"cannot read weights {path} as a plain state dict "
                       f"({load_failure(err)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise VweError(f"{path} does not hold a state dict (a mapping of tensors)")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def load_failure(err: Exception) -> str:
    """Why torch.load refused a file, without torch's advice to unpickle it (never safe here)."""
    text = one_line(str(err))
    if "weights_only" in text or "Unsupported global" in text or "pickle" in text.lower():
        return "it holds pickled Python objects, which vwe never loads"
    return text[:200] or type(err).__name__
