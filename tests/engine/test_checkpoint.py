"""Checkpoints are atomic and never unpickle arbitrary objects."""

import pytest
import torch

from vwe.engine.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from vwe.errors import VweError


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_round_trip_and_no_temp_left(tmp_path):
    path = save_checkpoint(tmp_path / "c" / "last.pt", {"w": torch.arange(3), "step": 4})
    state = load_checkpoint(path)
    assert state["step"] == 4 and torch.equal(state["w"], torch.arange(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_failed_save_keeps_previous(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", {"step": 1})
    with pytest.raises((AttributeError, TypeError)):  # lambdas cannot be saved
        save_checkpoint(path, {"step": 2, "bad": Evil()} | {"x": lambda: 0})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)  # a full pickle, as an unsafe loader would run it
    with pytest.raises(VweError, match="evil.pt"):
        load_checkpoint(path)
    with pytest.raises(VweError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_architecture_mismatch_is_one_clear_error():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(VweError, match=r"wrong shape \(weight"):
        load_model_state(model, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)}, "x.pt")
    with pytest.raises(VweError, match="1 missing"):
        load_model_state(model, {"weight": torch.zeros(2, 3)}, "x.pt")
