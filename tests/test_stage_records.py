"""What the stage records hold: a key added later stays out of the digest at its default, so
runs recorded before it stay current, and enters it once set."""

from vwe.config.schema import Config, DataConfig, TrainSegConfig
from vwe.stage_records import stage_record


def test_train_seg_records_loss_at_only_when_it_leaves_the_default(tiny_dataset, tmp_path):
    where = {"data": DataConfig(root=str(tiny_dataset)), "run_dir": str(tmp_path)}
    default = stage_record(Config(**where), "train_seg")
    at_input = stage_record(Config(train_seg=TrainSegConfig(loss_at="input"), **where),
                            "train_seg")
    assert not any(key.endswith("loss_at") for key in default.settings)
    assert at_input.settings["train_seg.loss_at"] == "input"
    assert default.digest() != at_input.digest()
    default_settings = {k: v for k, v in at_input.settings.items() if k != "train_seg.loss_at"}
    assert default_settings == default.settings


def test_pseudo_labels_record_class_thresholds_only_when_on(tiny_dataset, tmp_path):
    from vwe.config.schema import PseudoLabelConfig

    where = {"data": DataConfig(root=str(tiny_dataset)), "run_dir": str(tmp_path)}
    plane = {"scale": "plane", "bg_thres": "auto"}
    shared = stage_record(Config(pseudo_labels=PseudoLabelConfig(**plane), **where),
                          "pseudo_labels")
    per_class = stage_record(Config(pseudo_labels=PseudoLabelConfig(**plane,
                                                                    class_thresholds=True),
                                    **where), "pseudo_labels")
    assert "pseudo_labels.class_thresholds" not in shared.settings
    assert "class_rule" not in shared.inputs
    assert per_class.settings["pseudo_labels.class_thresholds"] is True
    assert "0.5" in per_class.inputs["class_rule"]
    assert shared.digest() != per_class.digest()
