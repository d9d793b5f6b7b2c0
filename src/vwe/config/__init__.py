"""Typed configuration: the schema (`schema.py`), named bundles (`presets.py`), the loader
(`loader.py`). Import from here: `from vwe.config import Config, load_config`."""

from vwe.config.loader import (
    all_keys,
    load_config,
    parse_overrides,
    seg_recipe,
    to_yaml,
    with_recipe,
)
from vwe.config.presets import PRESETS, SEG_RECIPES
from vwe.config.schema import (
    CamConfig,
    Config,
    CrfConfig,
    DataConfig,
    EvalCamConfig,
    EvalLabelsConfig,
    EvalSegConfig,
    ExportConfig,
    ExportModelConfig,
    ImportWeightsConfig,
    InferSegConfig,
    IrLabelConfig,
    LoopSettings,
    LossWeights,
    ModelConfig,
    PipelineConfig,
    PredictConfig,
    PseudoLabelConfig,
    SegConfig,
    SyntheticConfig,
    TrainCamConfig,
    TrainIrnConfig,
    TrainSegConfig,
)

__all__ = [
    "PRESETS", "SEG_RECIPES", "CamConfig", "Config", "CrfConfig", "DataConfig", "EvalCamConfig",
    "EvalLabelsConfig", "EvalSegConfig", "ExportConfig", "ExportModelConfig",
    "ImportWeightsConfig", "InferSegConfig",
    "IrLabelConfig", "LoopSettings", "LossWeights", "ModelConfig", "PipelineConfig",
    "PredictConfig", "PseudoLabelConfig", "SegConfig", "SyntheticConfig", "TrainCamConfig",
    "TrainIrnConfig", "TrainSegConfig", "all_keys", "load_config", "parse_overrides",
    "seg_recipe", "to_yaml", "with_recipe",
]
