"""Records: what made a stage's output folder, so a result can never be stale.

Every output folder holds `record.json`: the stage, the code's format version, the config keys
that determine the folder's content and the identity of its inputs (a checkpoint's content hash,
or the digest of the producing folder's own record). A stage compares the record it would write
with the one it finds (docs/pipeline.md#records):

- equal: the files are this config's; images already done are kept (resume);
- different, `overwrite=changed` or `always` (`--overwrite`, `vwe run`): the folder's files are
  removed and recomputed;
- different, `overwrite=never`: one VweError naming the differing keys and both remedies.

`overwrite=always` (`vwe run --from`) recomputes even when the records agree.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vwe.data.io import write_json_atomic
from vwe.errors import VweError

log = logging.getLogger(__name__)

RECORD_FILE = "record.json"
FORMAT_VERSION = 1  # raise when a stage's files change meaning: every folder is then remade
OVERWRITE_MODES = ("never", "changed", "always")
MISSING = "missing"
_HASH_CHUNK = 1 << 20
# training keys that steer how a run proceeds, not what it makes: left out of every record
RUN_CONTROL = ("resume", "stop_at_step", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class Record:
    """What one output folder was made from."""

    stage: str
    settings: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "version": self.version, "settings": self.settings,
                "inputs": self.inputs}

    def digest(self) -> str:
        """A short content hash: what a downstream record stores as this folder's identity."""
        return digest_of(self.to_json())


def digest_of(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return "rec:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def plain(value: Any) -> Any:
    """Dataclasses, tuples and paths as JSON values (records compare as JSON)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def flat_settings(cfg: Any, keys: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The dotted config keys (a section name takes all its leaves), minus `exclude`."""
    skipped = set(exclude)
    out: dict[str, Any] = {}

    def add(prefix: str, value: Any) -> None:
        if prefix in skipped:
            return
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                add(f"{prefix}.{f.name}", getattr(value, f.name))
        else:
            out[prefix] = plain(value)

    for key in keys:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        add(key, value)
    return out


def file_identity(path: Path) -> str:
    """sha256 of a file's bytes (a checkpoint is identified by what it holds, not its name).

    A stage and `vwe run` ask for the same checkpoint's identity several times; the hash is
    kept per (path, size, mtime), so each version of a file is read once per process.
    """
    path = Path(path)
    if not path.is_file():
        return MISSING
    stat = path.stat()
    return _content_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:32]


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record a folder holds, or None when it has none (or an unreadable one)."""
    path = Path(folder) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def folder_identity(folder: Path) -> str:
    """A folder's identity for a downstream record: its record's digest, else its path."""
    record = read_record(folder)
    if record is not None:
        return digest_of(record)
    return f"external:{Path(folder).resolve()}" if Path(folder).exists() else MISSING


def differences(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Readable `key: found → wanted` items for every setting, input or version that differs."""
    items = []
    if found.get("version") != wanted.get("version"):
        items.append(f"format version: {found.get('version')} → {wanted.get('version')}")
    for section in ("settings", "inputs"):
        old, new = found.get(section) or {}, wanted.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                name = key if section == "settings" else f"input {key}"
                items.append(f"{name}: {_short(old.get(key, MISSING))} → "
                             f"{_short(new.get(key, MISSING))}")
    return items


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def describe_mismatch(folder: Path, found: Mapping[str, Any] | None,
                      wanted: Mapping[str, Any]) -> str:
    if found is None:
        return f"{folder} holds files but no {RECORD_FILE} (made by an older vwe or by hand)"
    changed = differences(found, wanted)
    shown = "; ".join(changed[:4]) + ("; …" if len(changed) > 4 else "")
    return f"{folder} was made with other settings ({shown})"


def check_mode(overwrite: str) -> None:
    if overwrite not in OVERWRITE_MODES:
        raise VweError(f"overwrite={overwrite} is unknown; choose one of "
                       f"{', '.join(OVERWRITE_MODES)}")


def needs_clearing(folder: Path, wanted: Record, overwrite: str, stage: str,
                   has_outputs: bool) -> bool:
    """Whether `folder`'s files must go before `stage` writes; VweError when it may not."""
    check_mode(overwrite)
    found = read_record(folder)
    if overwrite == "always":
        return found is not None or has_outputs
    if found == wanted.to_json() or (found is None and not has_outputs):
        return False
    if overwrite == "changed":
        log.info("%s: %s; recomputing it", stage, describe_mismatch(folder, found,
                                                                      wanted.to_json()))
        return True
    raise VweError(f"{stage}: {describe_mismatch(folder, found, wanted.to_json())}; pass "
                   "--overwrite (or use `vwe run`) to recompute it, or set those keys back / "
                   "choose another run_dir to keep it")


def clear_outputs(folders: Sequence[Path], patterns: Sequence[str]) -> int:
    """Remove a stage's own files (by pattern) and records from its folders; returns the count."""
    removed = 0
    for folder in folders:
        folder = Path(folder)
        for pattern in (*patterns, RECORD_FILE):
            for path in folder.glob(pattern):
                if path.is_file():
                    path.unlink()
                    removed += 1
    return removed


def write_record(folders: Sequence[Path], record: Record) -> None:
    for folder in folders:
        write_json_atomic(Path(folder) / RECORD_FILE, record.to_json())


def require_current(folder: Path, wanted: Record, producer: str, remedy: str) -> None:
    """A consumer's check that an input folder holds what this config would make.

    A folder without a record (made by hand or by another tool) is used as it is, with a
    warning; one whose record differs is refused, naming the keys. `remedy` names what to run
    (e.g. "vwe make-cam --overwrite"); setting the keys back is the other way to agree again.
    """
    found = read_record(folder)
    if found == wanted.to_json():
        return
    if found is None:
        if Path(folder).is_dir():
            log.warning("%s has no %s: its files cannot be checked against this config",
                        folder, RECORD_FILE)
        return
    raise VweError(f"{describe_mismatch(folder, found, wanted.to_json())}, not what this config "
                   f"makes with {producer}; run `{remedy}` to remake it, or set those keys back")
