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
    with pytest.raises(VweError, match="evil.pt") as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "pickled Python objects" in message and "weights_only=False" not in message
    assert "\x1b" not in message and "\n" not in message  # no ANSI codes, one line
    with pytest.raises(VweError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_architecture_mismatch_is_one_clear_error():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(VweError, match=r"wrong shape \(weight"):
        load_model_state(model, {"weight": torch.zeros(4, 3), "bias": torch.zeros(2)}, "x.pt")
    with pytest.raises(VweError, match="1 missing"):
        load_model_state(model, {"weight": torch.zeros(2, 3)}, "x.pt")


def test_load_trained_rebuilds_the_recorded_network(tmp_path):
    from vwe.engine.checkpoint import load_trained
    from vwe.models.registry import arch_entry, create_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "backbone": "resnet_tiny", "layout": "torchvision",
              "msc_scales": [0.5], "freeze_stem": False}
    model = create_model("deeplab", **kwargs)
    save_checkpoint(tmp_path / "seg.pt", {"model": model.base.state_dict(), "num_classes": 3,
                                          "arch": arch_entry("deeplab", kwargs)})
    trained = load_trained(tmp_path / "seg.pt", "deeplab", 3, overrides={"msc_scales": []})
    assert not trained.model.training and trained.model.scales == ()
    for key, value in model.base.state_dict().items():
        assert torch.equal(trained.model.base.state_dict()[key], value), key
    with pytest.raises(VweError, match="is a DeepLab network .* not a CAM network"):
        load_trained(tmp_path / "seg.pt", "cam_net")
    with pytest.raises(VweError, match="trained for 3 classes but the dataset has 5"):
        load_trained(tmp_path / "seg.pt", "deeplab", 5)
    with pytest.raises(VweError, match="seg.backbone=resnet_tiny but the config says "
                                       "seg.backbone=resnet18; set seg.backbone=resnet_tiny"):
        load_trained(tmp_path / "seg.pt", "deeplab", must_match={"seg.backbone": ("backbone",
                                                                                 "resnet18")})


def test_a_full_disk_during_save_is_an_os_error(tmp_path, monkeypatch):
    import errno

    def full_disk(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as err:
        save_checkpoint(tmp_path / "last.pt", {"x": torch.zeros(2)})
    assert err.value.errno == errno.ENOSPC and err.value.filename.endswith("last.pt")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_load_trained_builds_on_meta_and_gives_the_trained_network(tmp_path):
    """No random initialisation for weights that are loaded anyway
    (docs/performance.md#start-up): same tensors, same outputs, same frozen parameters."""
    from vwe.engine.checkpoint import load_trained
    from vwe.models.registry import arch_entry, create_model

    kwargs = {"num_classes": 4, "backbone": "resnet_tiny", "num_words": 8,
              "detach_after_stage2": True}
    torch.manual_seed(0)
    model = create_model("cam_net", **kwargs).eval()
    save_checkpoint(tmp_path / "cam.pt", {"model": model.state_dict(), "num_classes": 4,
                                          "arch": arch_entry("cam_net", kwargs)})
    trained = load_trained(tmp_path / "cam.pt", "cam_net", 4).model
    assert not any(t.is_meta for t in [*trained.parameters(), *trained.buffers()])
    for key, value in model.state_dict().items():
        assert torch.equal(trained.state_dict()[key], value), key
    assert [p.requires_grad for p in trained.parameters()] == \
        [p.requires_grad for p in model.parameters()]
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(trained.cam_maps(x)[0], model.cam_maps(x)[0])


def test_fresh_networks_initialise_as_before_from_the_seed():
    """A fresh train-cam network still draws its initialisation from the seed: the same seed
    gives the same weights, another seed other weights."""
    from vwe.models.registry import create_model

    kwargs = {"num_classes": 4, "backbone": "resnet_tiny", "num_words": 8}
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(create_model("cam_net", **kwargs).state_dict())
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert not torch.equal(states[0]["backbone.conv1.weight"], states[2]["backbone.conv1.weight"])
