"""Typed configuration for every stage: dataclass defaults, YAML, presets, key=value overrides.

Resolution order (later wins): dataclass defaults (the paper's VOC settings) → the method preset
→ the YAML file → command-line `key=value` overrides. A preset named on the command line is
applied after the YAML file instead, so `preset=vwl-l` switches a full VOC config in one override.
An unknown key is a `VweError` that names the key and suggests the closest ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vwe.errors import VweError


@dataclass
class DataConfig:
    """Where the dataset lies (VOC 2012 + SBD layout) and how it is read."""

    root: str = "data/synthetic"
    train_list: str = "train_aug"  # CAM and IRN training split
    mask_dir: str = "SegmentationClassAug"  # falls back to SegmentationClass when absent
    num_workers: int = 2  # DataLoader worker processes per rank
    sbd_root: str = ""  # SBD 'dataset' folder (train.txt, val.txt) for `vwe prepare-voc`


@dataclass
class SyntheticConfig:
    """The generated dataset of specs/synthetic.md (written in VOC layout)."""

    size: str = "default"  # default | tiny: the split sizes and image sizes below are scaled
    num_classes: int = 8
    num_train_aug: int = 2000
    num_train: int = 300
    num_val: int = 300
    num_test: int = 100
    min_side: int = 96
    max_side: int = 160
    part_fraction: float = 0.3  # side of the discriminative part relative to the object
    context_prob: float = 0.8  # chance that a context class sits on its own background texture
    max_instances: int = 4
    full_frame_prob: float = 0.05  # images with one object filling most of the frame
    jpeg_quality: int = 85
    noise_std: float = 4.0
    blur_prob: float = 0.3
    seed: int = 0


@dataclass
class ModelConfig:
    """The CAM network: backbone, Visual Words Encoder, HSPP (specs/vwe.md table)."""

    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101 | resnet_tiny
    pretrained: str = "imagenet"  # imagenet (torchvision weights API) | none | /path/to/file.pth
    frozen_bn: bool = True  # BN statistics fixed (affine trained); false: batch statistics,
    # for training from random initialisation
    freeze_stem: bool = True
    detach_after_stage2: bool = True  # stem..layer2 get no gradient (root, VWL-L)
    num_words: int = 256  # k
    temperature: float = 1.0  # softmax temperature on cosine similarities; authors: none (1)
    detach_word_features: bool = True  # no gradient from the word encoder into the backbone
    word_histogram: str = "mean"  # mean (paper) | sum (authors' code)
    word_logits_from: str = "hspp"  # hspp (paper) | gap (authors' code)
    codebook: str = "learned"  # learned | memory_bank
    memory_rho: float = 1.0e-3  # EMA rate of the memory-bank codebook
    hspp_gamma: float = 2.0
    hspp_levels: list[int] = field(default_factory=lambda: [1, 2, 4])
    hspp_cells: str = "adaptive"  # adaptive (exact r×r cells) | floor_kernel (authors' pooling)


@dataclass
class LossWeights:
    """Weights of the CAM losses (specs/vwe-authors-code.md §2.3)."""

    img: float = 1.0
    word: float = 1.0
    w2i: float = 1.0
    decov: float = 0.0
    entropy: float = 0.0


@dataclass
class TrainCamConfig:
    """CAM training: the authors' augmentation and poly SGD."""

    epochs: int = 6
    max_steps: int = 0  # 0: floor(N / batch_size) * epochs; >0 caps the run (smoke tests)
    batch_size: int = 16  # global batch, split across ranks
    lr: float = 0.01  # backbone; new layers get lr * new_lr_mult
    new_lr_mult: float = 10.0
    weight_decay: float = 1.0e-4
    # The authors' runs used momentum 1e-4 (IRNet's PolyOptimizer passes weight decay where SGD
    # expects momentum); 0.9 is what the class name suggests.
    momentum: float = 1.0e-4
    poly_power: float = 0.9
    crop_size: int = 512
    resize_long: list[int] = field(default_factory=lambda: [320, 640])
    flip_prob: float = 0.5
    checkpoint_every: int = 500  # steps; also at every epoch end and at the end
    log_every: int = 10  # steps between TensorBoard scalars
    amp: bool = False  # bfloat16/float16 autocast on CUDA only
    losses: LossWeights = field(default_factory=LossWeights)
    resume: bool = False  # continue from <run_dir>/train_cam/last.pt (`--resume`)
    stop_at_step: int = 0  # >0: stop after this many steps with a resumable checkpoint


@dataclass
class CamConfig:
    """Multi-scale + flip CAM inference (specs/vwe-authors-code.md §3)."""

    split: str = "train"
    checkpoint: str = ""  # empty: <run_dir>/train_cam/final.pt
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 1.5, 2.0])
    flip_fusion: str = "max"  # max (VWE) | sum (IRNet)
    fuse_word_cam: bool = True  # CAM = max(M_img, M_word) (paper) or M_img alone (code)
    high_res_resize: str = "direct"  # direct | irnet_crop


@dataclass
class EvalCamConfig:
    """CAM evaluation: fixed background score plus a sweep."""

    split: str = "train"
    bkg_score: float = 0.14
    sweep: bool = True
    sweep_start: float = 0.0
    sweep_stop: float = 0.6
    sweep_step: float = 0.01


@dataclass
class ImportWeightsConfig:
    """`vwe import-weights`: the authors' released checkpoints into this project's format."""

    format: str = "ijcai-code"  # ijcai-code | vwl-l | vwl-m
    src: str = ""
    dst: str = ""


@dataclass
class Config:
    """Everything one run needs; saved resolved into the run directory."""

    preset: str = "paper"  # paper | ijcai-code | vwl-l | vwl-m
    run_dir: str = "runs/voc_cam_r50"
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 1
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train_cam: TrainCamConfig = field(default_factory=TrainCamConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    eval_cam: EvalCamConfig = field(default_factory=EvalCamConfig)
    import_weights: ImportWeightsConfig = field(default_factory=ImportWeightsConfig)


# Method presets: named bundles of individual options (specs/vwe.md, table).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "model.backbone": "resnet50",
        "model.word_logits_from": "hspp",
        "model.word_histogram": "mean",
        "model.codebook": "learned",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": True,
        "eval_cam.bkg_score": 0.14,
        "eval_cam.sweep": True,
    },
    "ijcai-code": {
        "model.backbone": "resnet50",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "learned",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.14,
        "eval_cam.sweep": False,
    },
    "vwl-l": {
        "model.backbone": "resnet101",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "learned",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 1.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.13,
        "eval_cam.sweep": False,
    },
    "vwl-m": {
        "model.backbone": "resnet101",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "memory_bank",
        "model.detach_after_stage2": False,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 0.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.13,
        "eval_cam.sweep": False,
    },
}


def all_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config tree (for suggestions on typos)."""
    keys = []
    items = node.items() if isinstance(node, Mapping | DictConfig) else []
    for key, value in items:
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, Mapping | DictConfig):
            keys.extend(all_keys(value, dotted + "."))
    return keys


def _unknown_key_error(key: str, schema: DictConfig, source: str) -> VweError:
    candidates = all_keys(schema)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    leaf = key.rsplit(".", 1)[-1]
    close += [c for c in candidates if c.endswith("." + leaf) and c not in close][:3]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `vwe <command> --help`"
    return VweError(f"unknown config key '{key}' in {source}{hint}")


def _check_keys(tree: Mapping[str, Any], known: set[str], schema: DictConfig, source: str,
                prefix: str = "") -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted not in known:
            raise _unknown_key_error(dotted, schema, source)
        if isinstance(value, Mapping) and any(k.startswith(dotted + ".") for k in known):
            _check_keys(value, known, schema, source, dotted + ".")


def _merge(base: DictConfig, update: Mapping[str, Any], source: str) -> DictConfig:
    _check_keys(update, set(all_keys(base)), base, source)
    try:
        return OmegaConf.merge(base, OmegaConf.create(dict(update)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        first_line = err.msg.splitlines()[0]
        raise VweError(f"bad value for config key '{key}' in {source}: {first_line}") from None


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """`a.b=1` strings into a nested dict, values parsed as YAML (so 0.5, true, [1,2] work)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise VweError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise VweError(f"override '{item}' sets inside a plain value")
        node[parts[-1]] = value
    return tree


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise VweError(f"config file {path} not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise VweError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise VweError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Resolve defaults → YAML → preset → overrides into a typed `Config`."""
    schema = OmegaConf.structured(Config)
    file_tree = _read_yaml(Path(path)) if path else {}
    cli_tree = parse_overrides(overrides)
    preset = cli_tree.get("preset", file_tree.get("preset", schema.preset))
    if preset not in PRESETS:
        raise VweError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    preset_tree = _nest(PRESETS[preset])
    if "preset" in cli_tree:  # an explicit choice on the command line beats the file
        layers = [(file_tree, str(path)), (preset_tree, f"preset '{preset}'")]
    else:
        layers = [(preset_tree, f"preset '{preset}'"), (file_tree, str(path))]
    merged = schema
    for tree, source in [*layers, (cli_tree, "the command line")]:
        merged = _merge(merged, tree, source)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_yaml(cfg: Config) -> str:
    """The fully resolved config as YAML (saved with every run)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
