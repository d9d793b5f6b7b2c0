"""Checkpoints: atomic saves, safe loads (weights_only=True, never unpickling objects)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vwe.errors import VweError


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
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
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VweError(f"checkpoint {path} cannot be read safely ({first}); "
                       "is it a vwe checkpoint (vwe import-weights converts the authors' files)?"
                       ) from None
    if not isinstance(state, dict):
        raise VweError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of tensors")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor],
                     source: str | Path) -> None:
    """Strict load with a one-line error that lists what does not fit."""
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
    model.load_state_dict(state_dict, strict=True)
