"""Valid ranges and choices of config keys, declared next to the field, checked on load.

`lr: float = check(0.01, gt=0)` keeps the default and records the range in the field's metadata;
`validate(cfg)` walks the resolved config before any work and turns the first bad value into one
line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vwe.errors import VweError


@dataclass(frozen=True)
class Valid:
    """What a key accepts: bounds (gt, ge, le, lt), a set of choices, each element of a list."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    each: bool = False  # the bounds apply to every element of a list
    nonempty: bool = True  # with `each`: the list needs at least one element
    optional: bool = False  # null is allowed (e.g. a recipe fills it)
    auto: bool = False  # the word "auto" is allowed: the stage chooses the value from the data
    pair: bool = False  # with `each`: exactly [low, high], low <= high (a range to sample from)

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        parts = [f"{op} {bound:g}" for op, bound in
                 ((">", self.gt), (">=", self.ge), ("<=", self.le), ("<", self.lt))
                 if bound is not None]
        text = " and ".join(parts) + (", or auto" if self.auto else "")
        if self.pair:
            return f"a pair [low, high] with low <= high, both {text}"
        if self.each:
            return f"a {'non-empty ' if self.nonempty else ''}list of numbers {text}"
        return text

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.auto and value == "auto":
            return True
        if self.choices is not None:
            return value in self.choices
        if self.each:
            if not isinstance(value, Sequence) or isinstance(value, str):
                return False
            if self.pair and (len(value) != 2 or not all(self._in_bounds(v) for v in value)
                              or value[0] > value[1]):
                return False
            return (len(value) > 0 or not self.nonempty) and \
                all(self._in_bounds(v) for v in value)
        return self._in_bounds(value)

    def _in_bounds(self, value: Any) -> bool:
        """A finite number within the bounds (inf is never a setting: it only crashes later)."""
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            return False
        return all(test for bound, test in (
            (self.gt, self.gt is None or value > self.gt),
            (self.ge, self.ge is None or value >= self.ge),
            (self.le, self.le is None or value <= self.le),
            (self.lt, self.lt is None or value < self.lt)) if bound is not None)


def check(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None,
          choices: Sequence[Any] | None = None, **bounds: Any) -> Any:
    """A dataclass field with `default` (or `factory`) whose valid values are recorded."""
    valid = Valid(choices=tuple(choices) if choices is not None else None, **bounds)
    if factory is not None:
        return field(default_factory=factory, metadata={"valid": valid})
    return field(default=default, metadata={"valid": valid})


def problems(node: Any, prefix: str = "") -> list[str]:
    """`key=value must be …` for every field of a config tree outside its declared range."""
    found = []
    for f in dataclasses.fields(node):
        value, key = getattr(node, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found += problems(value, key + ".")
            continue
        valid = f.metadata.get("valid")
        if valid is not None and not valid.accepts(value):
            found.append(f"{key}={value!r} must be {valid.describe()}")
    return found


def validate(cfg: Any, prefix: str = "") -> None:
    """One VweError naming the first key out of range (and how many more there are); `prefix`
    names a section checked on its own (e.g. "model." for a ModelConfig built in code)."""
    found = problems(cfg, prefix)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise VweError(f"config key {found[0]}{more}")
