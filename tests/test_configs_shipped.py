"""The shipped YAML files load, and the VOC file lists every key of the sections it covers."""

import yaml
from omegaconf import OmegaConf

from vwe.cli import packaged_config
from vwe.config import Config, all_keys, load_config

CAM_SECTIONS = ("data", "model", "train_cam", "cam", "eval_cam")
# sections that hold one command's arguments, not a run's settings; pretrain only matters
# offline, when a weights key says `generated` (the VOC and COCO configs start from ImageNet)
TOOL_ONLY = ("synthetic", "import_weights", "pipeline", "predict", "export_model", "ablate",
             "sweep", "codebook", "pretrain")


def test_voc_cam_config_lists_every_key_with_paper_values():
    path = packaged_config("voc_cam_r50.yaml")
    listed = set(all_keys(yaml.safe_load(path.read_text())))
    schema = OmegaConf.structured(Config)
    wanted = {k for k in all_keys(schema) if k.split(".")[0] in CAM_SECTIONS}
    wanted |= {"preset", "run_dir", "device", "seed"}
    assert wanted - listed == set()
    cfg = load_config(path)
    assert cfg.model.backbone == "resnet50" and cfg.train_cam.momentum == 1e-4


def test_demo_config_loads_and_presets_switch_it():
    cfg = load_config(packaged_config("demo.yaml"))
    assert cfg.model.backbone == "resnet_tiny" and cfg.model.pretrained == "generated"
    # the paper's recipe on the pretrained backbone (docs/synthetic.md#pretraining)
    assert cfg.model.frozen_bn and cfg.model.freeze_stem and cfg.model.detach_after_stage2
    assert (cfg.train_cam.lr, cfg.train_cam.new_lr_mult, cfg.train_cam.momentum) == (0.01, 10,
                                                                                   0.9)
    assert cfg.train_irn.backbone_init == "generated" and cfg.seg.pretrained == "generated"
    # thresholds without masks where they measured better (README): the CAM score and the walk
    assert cfg.eval_cam.bkg_score == "auto" and cfg.pseudo_labels.bg_thres == "auto"
    assert cfg.pseudo_labels.scale == "plane"
    # one walk threshold per class from that score (measured above the shared one, README)
    assert cfg.pseudo_labels.class_thresholds is True
    # the CAM network trained to where its loss flattens (24 epochs measured above 12, README)
    assert cfg.train_cam.epochs == 24
    # DeepLab's class-balanced loss for 6,000 iterations: its seed spread measured within 1.5
    # there, not at 3,000 or with plain CE (README, docs/segmentation.md#seed-spread-on-the-demo)
    assert cfg.train_seg.loss == "balanced_ce" and cfg.train_seg.iterations == 6000
    # the CRF's bilateral width scaled from VOC's 500 px to the demo's ~128 (docs/segmentation.md)
    assert round(cfg.infer_seg.crf.bi_xy_std) == round(67 * 128 / 500)
    assert load_config(packaged_config("voc_cam_r50.yaml"),
                       ["preset=vwl-m"]).model.codebook == "memory_bank"


def test_voc_pipeline_config_lists_every_key():
    path = packaged_config("voc.yaml")
    listed = set(all_keys(yaml.safe_load(path.read_text())))
    schema = OmegaConf.structured(Config)
    wanted = {k for k in all_keys(schema) if k.split(".")[0] not in TOOL_ONLY}
    assert wanted - listed == set()
    cfg = load_config(path)
    assert cfg.cam.split == "train_aug" and cfg.pseudo_labels.split == "train_aug"
    assert cfg.eval_cam.split == "train" and cfg.eval_labels.split == "train"
    assert cfg.seg.backbone == "resnet101" and cfg.infer_seg.split == "val"


def test_coco_config_lists_every_key_with_the_coco_settings():
    path = packaged_config("coco.yaml")
    listed = set(all_keys(yaml.safe_load(path.read_text())))
    schema = OmegaConf.structured(Config)
    assert {k for k in all_keys(schema) if k.split(".")[0] not in TOOL_ONLY} - listed == set()
    cfg = load_config(path)
    assert cfg.data.format == "coco" and cfg.data.coco_crowd == "background"
    assert cfg.seg.pretrained == "imagenet" and cfg.train_seg.iterations == 100_000
    assert (cfg.train_seg.batch_size, cfg.train_seg.accumulation) == (20, 2)  # 10 × iter_size 2
    assert cfg.train_seg.lr == 2e-4 and cfg.train_seg.crop_size == 321
    assert (min(cfg.train_seg.scales), max(cfg.train_seg.scales)) == (0.5, 1.5)
    voc = load_config(packaged_config("voc.yaml"))
    assert cfg.infer_seg.crf == voc.infer_seg.crf  # the same CRF


def test_msrc_config_uses_class_scores_and_the_balanced_loss():
    """The MSRC recipe as measured in the README: every threshold `auto`, one walk score per
    class, DeepLab's class-balanced loss for 800 iterations."""
    cfg = load_config(packaged_config("msrc.yaml"))
    assert [cfg.eval_cam.bkg_score, cfg.ir_labels.fg_thres, cfg.ir_labels.bg_thres,
            cfg.pseudo_labels.bg_thres] == ["auto"] * 4
    assert cfg.pseudo_labels.scale == "plane" and cfg.pseudo_labels.class_thresholds is True
    assert cfg.train_seg.loss == "balanced_ce" and cfg.train_seg.iterations == 800
    assert cfg.model.backbone == cfg.seg.backbone == "efficientnet_lite0"


def test_demo_and_msrc_predict_new_images_as_they_infer_val():
    """`vwe predict --config` with a shipped config infers new images the way its val scores
    were made (outer scales, flip, the model's MSC or not)."""
    for name in ("demo.yaml", "msrc.yaml"):
        cfg = load_config(packaged_config(name))
        for key in ("msc", "scales", "flip"):
            assert getattr(cfg.predict, key) == getattr(cfg.infer_seg, key), (name, key)
    assert load_config(packaged_config("demo.yaml")).predict.msc is False
