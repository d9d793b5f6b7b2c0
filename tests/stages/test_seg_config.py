"""The shipped segmentation YAML lists every key of the segmentation sections; recipes resolve."""

import pytest
import yaml
from omegaconf import OmegaConf

from vwe.cli import packaged_config
from vwe.config import Config, TrainSegConfig, all_keys, load_config, with_recipe
from vwe.errors import VweError
from vwe.models.seg_loss import check_loss_type

SEG_SECTIONS = ("seg", "train_seg", "infer_seg", "eval_seg", "export")


def test_seg_config_lists_every_key_with_spec_defaults():
    path = packaged_config("seg_voc_deeplabv2_r101.yaml")
    listed = set(all_keys(yaml.safe_load(path.read_text())))
    wanted = {k for k in all_keys(OmegaConf.structured(Config)) if k.split(".")[0]
              in SEG_SECTIONS}
    assert wanted - listed == set()
    cfg = load_config(path)
    defaults = load_config(None, [f"run_dir={cfg.run_dir}", f"data.root={cfg.data.root}",
                                  "data.num_workers=4", "infer_seg.crf.workers=4"])
    # the file states the dataclass defaults (= docs/segmentation.md#config-defaults)
    for section in SEG_SECTIONS:
        assert getattr(cfg, section) == getattr(defaults, section), section
    assert (cfg.train_seg.batch_size, cfg.train_seg.crop_size, cfg.train_seg.iterations) == \
        (10, 321, 20000)
    crf = cfg.infer_seg.crf
    assert (crf.iterations, crf.pos_w, crf.pos_xy_std, crf.bi_w, crf.bi_xy_std,
            crf.bi_rgb_std) == (10, 3, 1, 4, 67, 3)


def test_recipes_fill_null_keys_and_overrides_win():
    kz = load_config(None).train_seg
    assert (kz.recipe, kz.lr, kz.poly_update_every, kz.momentum) == ("deeplab", 2.5e-4, 10, 0.9)
    rl = load_config(None, ["train_seg.recipe=vwe-author"]).train_seg
    assert (rl.recipe, rl.lr, rl.poly_update_every) == ("vwe_author", 1e-3, 1)
    mine = load_config(None, ["train_seg.lr=0.01"]).train_seg
    assert mine.lr == 0.01 and mine.weight_decay == 5e-4
    assert with_recipe(TrainSegConfig()).lr == 2.5e-4  # a config built by hand resolves too
    with pytest.raises(VweError, match="train_seg.recipe=kz is unknown"):
        load_config(None, ["train_seg.recipe=kz"])
    with pytest.raises(VweError, match="train_seg.loss='focal' must be one of ce, balanced_ce"):
        load_config(None, ["train_seg.loss=focal"])
    with pytest.raises(VweError, match="train_seg.loss=focal is unknown"):
        check_loss_type("focal")  # the library path (msc_loss) checks it too
