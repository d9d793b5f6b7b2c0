"""Reading weights from outside: torchvision's ImageNet weights, a user's local file, and the
backbone `vwe pretrain` caches (`generated`).

The networks in `models/` receive these tensors; this module is where the files and the
download are (weights_only=True: a weights file is never unpickled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from vwe.config import Config
from vwe.data.io import user_cache_dir
from vwe.data.pretrain_task import TASK_VERSION
from vwe.engine.records import RUN_CONTROL, Record, flat_settings
from vwe.errors import VweError, one_line

GENERATED = "generated"  # a weights key's value naming `vwe pretrain`'s cached backbone
BACKBONE_FILE = "backbone.pth"
# pretrain.* keys that do not change the weights
NOT_IN_DIGEST = (*RUN_CONTROL, "cache_dir", "val_images", "num_workers")


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
                       f"({load_failure(err, path)})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise VweError(f"{path} does not hold a state dict (a mapping of tensors)")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def load_state_strictly(model: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load every tensor of `model` from `state` by name: anything missing, unexpected or
    misshapen is one line naming the first keys of each kind (timm's load_pretrained checks)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        raise VweError(f"{source} does not fit: missing {_first(missing)}, unexpected "
                       f"{_first(unexpected)}, wrong shape {_first(shapes)}")
    with torch.no_grad():
        model.load_state_dict(state, strict=True)


def _first(keys: list[str], n: int = 5) -> str:
    """A short list of keys for an error message."""
    if not keys:
        return "none"
    return "[" + ", ".join(keys[:n]) + "]" + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


FILE_KINDS = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"),
              (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"), (b"\x1f\x8b", "gzip data"),
              (b"{", "JSON or text"), (b"[", "JSON or text"), (b"\x7fELF", "a program"))


def file_kind(path: Path) -> str | None:
    """What a file that torch cannot read looks like, from its first bytes (None: unknown)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return None
    if not head:
        return "empty"
    return next((kind for magic, kind in FILE_KINDS if head.startswith(magic)), None)


def load_failure(err: Exception, path: Path | None = None) -> str:
    """Why torch.load refused a file, without torch's advice to unpickle it (never safe here):
    a file that is not a PyTorch file at all is named for what it is (a JPEG, JSON, …)."""
    kind = file_kind(path) if path is not None else None
    if kind is not None:
        return f"it is {kind}, not a PyTorch file"
    text = one_line(str(err))
    if "weights_only" in text or "Unsupported global" in text or "pickle" in text.lower():
        return "it holds pickled Python objects, which vwe never loads"
    return text[:200] or type(err).__name__


def pretrain_record(cfg: Config, backbone: str) -> Record:
    """What `vwe pretrain`'s backbone is made from: every pretrain.* key that changes the
    weights, the backbone and the task's version."""
    settings = flat_settings(cfg, ["pretrain"], [f"pretrain.{k}" for k in NOT_IN_DIGEST])
    return Record("pretrain", {"backbone": backbone, "task_version": TASK_VERSION, **settings},
                  {})


def generated_backbone_dir(cfg: Config, backbone: str) -> Path:
    """Where `vwe pretrain` trains and caches `backbone`: named by its record's digest, so other
    settings never reuse a stale file."""
    digest = pretrain_record(cfg, backbone).digest().removeprefix("rec:")
    cache = Path(cfg.pretrain.cache_dir) if cfg.pretrain.cache_dir else \
        user_cache_dir() / "pretrained"
    return cache / f"{backbone}-{digest[:12]}"


def generated_backbone_file(cfg: Config, backbone: str) -> Path:
    return generated_backbone_dir(cfg, backbone) / BACKBONE_FILE


def _generated_keys(cfg: Config) -> list[tuple[str, str, str]]:
    """(section, key, backbone) of every weights key set to `generated`."""
    keys = [("model", "pretrained", cfg.model.backbone),
            ("train_irn", "backbone_init", cfg.train_irn.backbone or cfg.model.backbone),
            ("seg", "pretrained", cfg.seg.backbone)]
    return [k for k in keys if getattr(getattr(cfg, k[0]), k[1]) == GENERATED]


def resolve_generated(cfg: Config, require: str = "") -> Config:
    """`cfg` with every `generated` weights key replaced by the cached file's path (for the
    backbone that key initialises); `require` (model | train_irn | seg: the section a stage
    reads): that key's file must exist, else one line that says which command makes it."""
    changes = {}
    for section, key, backbone in _generated_keys(cfg):
        path = generated_backbone_file(cfg, backbone)
        if require == section and not path.is_file():
            hint = "" if backbone == cfg.model.backbone else f" model.backbone={backbone}"
            raise VweError(f"{section}.{key}=generated: no pretrained {backbone} for these "
                           f"pretrain.* keys ({path}); run `vwe pretrain --config FILE{hint}` "
                           "first (vwe run and vwe demo run it for you)")
        changes[section] = dataclasses.replace(getattr(cfg, section), **{key: str(path)})
    return dataclasses.replace(cfg, **changes) if changes else cfg


def wants_generated(cfg: Config) -> list[str]:
    """The backbones some weights key asks `vwe pretrain` for."""
    return sorted({backbone for _, _, backbone in _generated_keys(cfg)})
