"""Declared ranges: bounds, choices, lists, nulls, and the walk over a config tree."""

from dataclasses import dataclass, field

import pytest

from vwe.config import load_config
from vwe.config.valid import Valid, check, problems, validate
from vwe.errors import VweError


def test_bounds_choices_lists_and_nulls():
    assert Valid(gt=0).accepts(0.1) and not Valid(gt=0).accepts(0.0)
    assert Valid(ge=0, le=1).accepts(1) and not Valid(ge=0, le=1).accepts(1.01)
    assert not Valid(gt=0).accepts(float("nan")) and not Valid(ge=0).accepts(True)
    assert Valid(choices=("a", "b")).accepts("b") and not Valid(choices=("a",)).accepts("c")
    assert Valid(each=True, gt=0).accepts([1.0, 0.5]) and not Valid(each=True, gt=0).accepts([])
    assert Valid(each=True, gt=0, nonempty=False).accepts([])
    assert not Valid(each=True, gt=0).accepts([1.0, -0.5])
    assert Valid(gt=0, optional=True).accepts(None) and not Valid(gt=0).accepts(None)
    assert Valid(ge=0, lt=1).describe() == ">= 0 and < 1"


def test_problems_walk_nested_sections():
    @dataclass
    class Inner:
        rate: float = check(0.5, gt=0, le=1)

    @dataclass
    class Outer:
        size: int = check(3, ge=1)
        inner: Inner = field(default_factory=Inner)

    assert problems(Outer()) == []
    assert problems(Outer(size=0, inner=Inner(rate=2.0))) == [
        "size=0 must be >= 1", "inner.rate=2.0 must be > 0 and <= 1"]
    with pytest.raises(VweError, match=r"config key size=0 must be >= 1 \(and 1 more\)"):
        validate(Outer(size=0, inner=Inner(rate=2.0)))


def test_shipped_defaults_are_all_valid():
    assert problems(load_config()) == []
