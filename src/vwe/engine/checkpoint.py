"""Checkpoints: atomic saves, safe loads (weights_only=True, never unpickling objects), and the
one way every stage rebuilds a trained network (`load_trained`)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vwe.engine.weights import load_failure
from vwe.errors import VweError
from vwe.models.registry import MODELS, create_model, saved_part

DISK_SLACK = 1 << 20  # less free space than this after a failed save: the disk is full


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch's zip writer reports a full disk as a RuntimeError
            if "unexpected pos" in str(err) or "write" in str(err).lower() or \
                    shutil.disk_usage(path.parent).free < DISK_SLACK:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
            raise
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load tensors, numbers, strings and containers only; a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise VweError(f"checkpoint {path} not found; train it first or pass the right path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any load failure is the file's fault here
        raise VweError(f"checkpoint {path} cannot be read safely ({load_failure(err, path)}); "
                       "is it a vwe checkpoint (vwe import-weights converts the authors' "
                       "files)?") from None
    if not isinstance(state, dict):
        raise VweError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of tensors")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                     source: str | Path, assign: bool = False) -> None:
    """Strict load with a one-line error that lists what does not fit; `assign` makes the
    loaded tensors the model's own (for a model built on the meta device)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state_dict)
                         if tuple(own[k].shape) != tuple(state_dict[k].shape))
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", wrong_shape)):
        if keys:
            more = ", …" if len(keys) > 4 else ""
            problems.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{more})")
    if problems:
        raise VweError(f"checkpoint {source} does not fit this model's architecture: "
                       f"{'; '.join(problems)}. Check model.backbone / preset against the "
                       "checkpoint's recorded config")
    model.load_state_dict(state_dict, strict=True, assign=assign)


def _on_meta(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def build_for_weights(name: str, kwargs: Mapping[str, Any], state_dict: dict[str, torch.Tensor],
                      source: str | Path) -> torch.nn.Module:
    """The network `name` with `state_dict` strictly loaded, built on the meta device so that no
    time goes into a random initialisation the weights overwrite (docs/performance.md#start-up).

    A network with tensors the checkpoint does not hold is built the ordinary way instead.
    """
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    load_model_state(saved_part(name, model), state_dict, source, assign=True)
    if _on_meta(model):
        model = create_model(name, **kwargs)
        load_model_state(saved_part(name, model), state_dict, source)
    return model


@dataclass(frozen=True)
class Trained:
    """A network rebuilt from its checkpoint, in eval mode, and the checkpoint's other entries."""

    model: torch.nn.Module
    state: dict[str, Any]
    path: Path

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.state["arch"]["kwargs"])


def load_trained(path: str | Path, expect: str, num_classes: int | None = None,
                 must_match: Mapping[str, tuple[str, Any]] | None = None,
                 overrides: Mapping[str, Any] | None = None) -> Trained:
    """The network a vwe checkpoint records (`arch`), its weights strictly loaded.

    expect: the registry name the caller needs (a DeepLab file given as a CAM checkpoint is
    named as such). num_classes: what the dataset needs (the checkpoint's `num_classes`).
    must_match: config key → (kwarg, value) that must equal the recorded architecture.
    overrides: kwargs replaced before building (e.g. DeepLab's MSC scales at inference).
    """
    path = Path(path)
    state = load_checkpoint(path)
    arch = state.get("arch")
    if not isinstance(arch, dict) or arch.get("name") not in MODELS \
            or not isinstance(arch.get("kwargs"), dict) or "model" not in state:
        raise VweError(f"checkpoint {path} records no network this vwe can build (no 'arch' "
                       "entry); pass a checkpoint written by `vwe train-*`, or convert the "
                       "authors' files with `vwe import-weights`")
    if arch["name"] != expect:
        raise VweError(f"checkpoint {path} is a {MODELS[arch['name']].title} checkpoint, not a "
                       f"{MODELS[expect].title} one; pass the right file")
    kwargs = dict(arch["kwargs"])
    saved_classes = int(state.get("num_classes", kwargs.get("num_classes", -1)))
    if num_classes is not None and saved_classes != num_classes:
        raise VweError(f"checkpoint {path} was trained for {saved_classes} classes but the "
                       f"dataset has {num_classes}; use this dataset's checkpoint")
    for key, (kwarg, value) in (must_match or {}).items():
        if kwarg in kwargs and kwargs[kwarg] != value:
            raise VweError(f"checkpoint {path} was trained with {key}={kwargs[kwarg]} but the "
                           f"config says {key}={value}; set {key}={kwargs[kwarg]} or pass the "
                           "matching checkpoint")
    model = build_for_weights(arch["name"], {**kwargs, **(overrides or {})}, state["model"], path)
    return Trained(model.eval(), state, path)
