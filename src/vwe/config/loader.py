"""Resolve a config: dataclass defaults → method preset → YAML file → `key=value` overrides.

A preset named on the command line is applied after the YAML file instead, so `preset=vwl-l`
switches a full VOC config in one override. An unknown key is a `VweError` that names the key and
suggests the closest ones.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vwe.config.presets import PRESETS, SEG_RECIPES
from vwe.config.schema import Config, TrainSegConfig
from vwe.config.valid import validate
from vwe.data.io import read_text_file
from vwe.errors import VweError


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
        if not isinstance(key, str) or dotted not in known:
            raise _unknown_key_error(dotted, schema, source)
        section = any(k.startswith(dotted + ".") for k in known)
        if section and not isinstance(value, Mapping):
            example = next(k for k in sorted(known) if k.startswith(dotted + "."))
            raise VweError(f"config key '{dotted}' in {source} is a section, not a value; set "
                           f"its keys (e.g. {example}=…) instead of {dotted}={value!r}")
        if section:
            _check_keys(value, known, schema, source, dotted + ".")


def _merge(base: DictConfig, update: Mapping[str, Any], source: str) -> DictConfig:
    _check_keys(update, set(all_keys(base)), base, source)
    try:
        return OmegaConf.merge(base, OmegaConf.create(dict(update)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        first_line = (err.msg or type(err).__name__).splitlines()[0]
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


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """'model.num_words=16,32,64' → ('model.num_words', [16, 32, 64]) (values read as YAML)."""
    if "=" not in spec:
        raise VweError(f"sweep '{spec}' must be KEY=V1,V2,… (e.g. model.num_words=16,32,64)")
    key, raw = spec.split("=", 1)
    values = [parse_overrides([f"v={item.strip()}"])["v"] for item in raw.split(",")
              if item.strip()]
    if len(values) < 2:
        raise VweError(f"sweep '{spec}' needs at least two values, separated by commas")
    return key.strip(), values


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently, dropping the first block without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (first on line {seen[key]}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise VweError(f"--config {path} is a folder; pass a YAML file such as "
                       f"{path / 'config.yaml'}")
    if not path.is_file():
        raise VweError(f"config file {path} not found; pass an existing YAML file to --config")
    try:
        data = yaml.load(read_text_file(path, "config file"), Loader=UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as err:
        line = f" (line {err.problem_mark.line + 1})" if err.problem_mark else ""
        raise VweError(f"config file {path} is not valid YAML: {err.problem}{line}") from None
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
    if not isinstance(preset, str) or preset not in PRESETS:
        raise VweError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    preset_tree = _nest(PRESETS[preset])
    if "preset" in cli_tree:  # an explicit choice on the command line beats the file
        layers = [(file_tree, str(path)), (preset_tree, f"preset '{preset}'")]
    else:
        layers = [(preset_tree, f"preset '{preset}'"), (file_tree, str(path))]
    merged = schema
    for tree, source in [*layers, (cli_tree, "the command line")]:
        merged = _merge(merged, tree, source)
    cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(cfg)  # every declared range, before the recipe fills its keys
    cfg.train_seg = with_recipe(cfg.train_seg)
    return cfg


def with_overrides(cfg: Config, overrides: Iterable[str], source: str = "overrides") -> Config:
    """A resolved config with `key=value` overrides applied (checked like the command line's):
    how experiments derive each row's config from the one they were given."""
    merged = _merge(OmegaConf.structured(cfg), parse_overrides(overrides), source)
    derived: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(derived)
    derived.train_seg = with_recipe(derived.train_seg)
    return derived


def seg_recipe(name: str) -> str:
    """A DeepLab recipe's canonical name (`vwe-author` → `vwe_author`); VweError if unknown."""
    canonical = name.replace("-", "_")
    if canonical not in SEG_RECIPES:
        raise VweError(f"train_seg.recipe={name} is unknown; choose one of "
                       f"{', '.join(SEG_RECIPES)} (docs/segmentation.md#training-recipes)")
    return canonical


def with_recipe(train_seg: TrainSegConfig) -> TrainSegConfig:
    """The recipe's name made canonical and its values in every train_seg key left null, so the
    resolved config (and every record) holds the numbers the run uses."""
    recipe = seg_recipe(train_seg.recipe)
    values = {key: value for key, value in SEG_RECIPES[recipe].items()
              if getattr(train_seg, key) is None}
    return dataclasses.replace(train_seg, recipe=recipe, **values)


def to_yaml(cfg: Config) -> str:
    """The fully resolved config as YAML (saved with every run)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
