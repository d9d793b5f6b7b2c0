"""Config resolution: defaults → YAML → preset → overrides, and clear errors."""

import pytest

from vwe.config import PRESETS, load_config, parse_overrides, to_yaml
from vwe.errors import VweError


def test_defaults_are_the_paper_settings():
    cfg = load_config()
    assert cfg.preset == "paper"
    assert cfg.model.backbone == "resnet50"
    assert cfg.model.num_words == 256 and cfg.model.hspp_gamma == 2.0
    assert cfg.model.hspp_levels == [1, 2, 4]
    assert cfg.train_cam.momentum == pytest.approx(1e-4)
    assert cfg.cam.scales == [1.0, 0.5, 1.5, 2.0]


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_is_one_override(preset):
    cfg = load_config(None, [f"preset={preset}"])
    for key, value in PRESETS[preset].items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if isinstance(value, dict):
            assert {k: getattr(node, k) for k in value} == value
        else:
            assert node == value


def test_resolution_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: vwl-l\nmodel:\n  backbone: resnet18\n  num_words: 32\n")
    cfg = load_config(path, ["model.num_words=16"])
    assert cfg.model.backbone == "resnet18"  # the file's own values beat its preset
    assert cfg.model.num_words == 16  # the command line wins over both
    assert cfg.train_cam.losses.decov == 1.0  # the rest of the preset applies
    switched = load_config(path, ["preset=paper"])  # a preset on the command line beats the file
    assert switched.model.backbone == "resnet50" and switched.model.num_words == 32


def test_values_are_parsed_as_yaml():
    tree = parse_overrides(["a.b=0.5", "c=true", "d=[1, 2]", "e=text"])
    assert tree == {"a": {"b": 0.5}, "c": True, "d": [1, 2], "e": "text"}


def test_unknown_key_names_key_and_suggests(tmp_path):
    with pytest.raises(VweError, match=r"train_cam.bach_size.*did you mean train_cam.batch_size"):
        load_config(None, ["train_cam.bach_size=4"])
    path = tmp_path / "bad.yaml"
    path.write_text("modle:\n  backbone: resnet18\n")
    with pytest.raises(VweError, match=r"'modle' in .*bad.yaml.*model"):
        load_config(path)


def test_bad_value_and_bad_preset_and_missing_file(tmp_path):
    with pytest.raises(VweError, match="model.num_words"):
        load_config(None, ["model.num_words=many"])
    with pytest.raises(VweError, match="unknown preset 'vwl-x'"):
        load_config(None, ["preset=vwl-x"])
    with pytest.raises(VweError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(VweError, match="key=value"):
        load_config(None, ["model.backbone"])


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(None, ["preset=vwl-m", "train_cam.lr=0.02"])
    path = tmp_path / "resolved.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(path) == cfg
