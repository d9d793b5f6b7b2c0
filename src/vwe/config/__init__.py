"""Typed configuration: the schema (`schema.py`), named bundles (`presets.py`), the loader
(`loader.py`). Import from here: `from vwe.config import Config, load_config`."""

from vwe.config.loader import (
    all_keys,
    load_config,
    parse_overrides,
    parse_sweep,
    seg_recipe,
    to_yaml,
    with_overrides,
    with_recipe,
)
from vwe.config.presets import PRESETS, SEG_RECIPES
from vwe.config.schema import (
    AblateConfig,
    CamConfig,
    CodebookConfig,
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
    PretrainConfig,
    PseudoLabelConfig,
    SegConfig,
    SweepConfig,
    SyntheticConfig,
    TrainCamConfig,
    TrainIrnConfig,
    TrainSegConfig,
)

__all__ = [
    "AblateConfig", "PRESETS", "SEG_RECIPES", "CamConfig", "CodebookConfig", "Config",
    "CrfConfig", "DataConfig", "EvalCamConfig", "SweepConfig",
    "EvalLabelsConfig", "EvalSegConfig", "ExportConfig", "ExportModelConfig",
    "ImportWeightsConfig", "InferSegConfig",
    "IrLabelConfig", "LoopSettings", "LossWeights", "ModelConfig", "PipelineConfig",
    "PredictConfig", "PretrainConfig", "PseudoLabelConfig", "SegConfig", "SyntheticConfig",
    "TrainCamConfig",
    "TrainIrnConfig", "TrainSegConfig", "all_keys", "load_config", "parse_overrides", "parse_sweep",
    "seg_recipe", "to_yaml", "with_overrides", "with_recipe",
]
