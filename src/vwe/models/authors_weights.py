"""The authors' released CAM checkpoints ↔ `CamNet` state dicts (docs/method.md#state-dict-layout).

Their `Net` registers each tensor under several names, in this order:
`resnet.*` (torchvision names), `stage1..4.*`, `classifier`, `fc_a`, `fc_b`, `VWE.centroid`
(root, v2), `backbone.{0..3}.*`, `newly_added.{i}.*`, where
stage1 = Sequential(conv1, bn1, relu, maxpool, layer1), stageN = Sequential(layerN) for N ≥ 2,
backbone = ModuleList([stage1..4]), newly_added = ModuleList([classifier, VWE, fc_a, fc_b])
(v2_mbk: [classifier, fc_a, fc_b]; no codebook). Checkpoints come from `nn.DataParallel`, so
keys carry `module.`; a strict load needs every alias, and the last alias loaded wins, i.e. the
`backbone.*` / `newly_added.*` copies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from vwe.errors import VweError
from vwe.models.backbone import ARCHITECTURES, ResNet
from vwe.models.cam_net import CamNet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuthorsVersion:
    """One of the authors' code paths: the preset it matches and its network."""

    preset: str
    backbone: str
    has_codebook: bool  # learned `VWE.centroid` in the state dict


AUTHORS_VERSIONS: dict[str, AuthorsVersion] = {
    "ijcai-code": AuthorsVersion("ijcai-code", "resnet50", True),  # root
    "vwl-l": AuthorsVersion("vwl-l", "resnet101", True),  # v2
    "vwl-m": AuthorsVersion("vwl-m", "resnet101", False),  # v2_mbk
}


def _version(version: str) -> AuthorsVersion:
    if version not in AUTHORS_VERSIONS:
        raise VweError(f"unknown authors' checkpoint format '{version}'; choose one of "
                       f"{', '.join(AUTHORS_VERSIONS)}")
    return AUTHORS_VERSIONS[version]


def _stage_alias(key: str) -> tuple[int, str]:
    """torchvision backbone key → (stage index 0..3, key inside that stage)."""
    head, rest = key.split(".", 1)
    inside_stage1 = {"conv1": "0", "bn1": "1", "layer1": "4"}
    if head in inside_stage1:
        return 0, f"{inside_stage1[head]}.{rest}"
    return int(head.removeprefix("layer")) - 1, f"0.{rest}"


def backbone_aliases(key: str) -> list[str]:
    """The authors' names of one backbone tensor, in load order (the last one wins)."""
    stage, inner = _stage_alias(key)
    return [f"resnet.{key}", f"stage{stage + 1}.{inner}", f"backbone.{stage}.{inner}"]


def head_aliases(has_codebook: bool) -> dict[str, list[str]]:
    """Our head key → the authors' names, in load order (the `newly_added` copy last)."""
    order = ["classifier", "VWE", "fc_a", "fc_b"] if has_codebook else [
        "classifier", "fc_a", "fc_b"]
    index = {name: i for i, name in enumerate(order)}
    heads = {
        "classifier.weight": ["classifier.weight", f"newly_added.{index['classifier']}.weight"],
        "w2i.weight": ["fc_a.weight", f"newly_added.{index['fc_a']}.weight"],
        "word_classifier.weight": ["fc_b.weight", f"newly_added.{index['fc_b']}.weight"],
    }
    if has_codebook:
        heads["codebook.weight"] = ["VWE.centroid", f"newly_added.{index['VWE']}.centroid"]
    return heads


def _authors_key_order(backbone_keys: list[str], heads: dict[str, list[str]]) -> list[str]:
    """Every alias in the order their `state_dict()` lists them (registration order)."""
    resnet = [backbone_aliases(k)[0] for k in backbone_keys]
    stages = [backbone_aliases(k)[1] for k in backbone_keys]  # stage1..4 in torchvision order
    plain = [names[0] for names in heads.values()]
    plain.sort(key=["classifier.weight", "fc_a.weight", "fc_b.weight", "VWE.centroid"].index)
    backbone = [backbone_aliases(k)[2] for k in backbone_keys]
    newly_added = sorted((names[-1] for names in heads.values()),
                         key=lambda name: int(name.split(".")[1]))
    return resnet + stages + plain + backbone + newly_added


def _alias_map(backbone_keys: list[str], has_codebook: bool) -> dict[str, list[str]]:
    """Our key → authors' aliases, for the whole network."""
    mapping = {f"backbone.{k}": backbone_aliases(k) for k in backbone_keys}
    mapping.update(head_aliases(has_codebook))
    return mapping


def authors_state_dict(model: CamNet, version: str, prefix: str = "") -> dict[str, Tensor]:
    """`model` written in the authors' full alias layout (4-D head weights, optional prefix)."""
    info = _version(version)
    if info.has_codebook != (model.codebook is not None):
        raise ValueError(f"format {version} needs a CamNet with "
                         f"{'a learned' if info.has_codebook else 'a memory-bank'} codebook")
    ours = model.state_dict()
    backbone_keys = [k.removeprefix("backbone.") for k in ours if k.startswith("backbone.")]
    mapping = _alias_map(backbone_keys, info.has_codebook)
    by_alias = {}
    for our_key, aliases in mapping.items():
        value = ours[our_key]
        if our_key == "codebook.weight":
            value = value.reshape(*value.shape, 1, 1)  # their centroid is (k, d, 1, 1)
        by_alias.update({alias: value for alias in aliases})
    order = _authors_key_order(backbone_keys, head_aliases(info.has_codebook))
    return {prefix + alias: by_alias[alias] for alias in order}


def _backbone_shapes(name: str) -> dict[str, torch.Size]:
    """Key → shape of a backbone, built on the meta device (no memory, no init cost)."""
    if name not in ARCHITECTURES:
        raise VweError(f"unknown backbone '{name}'; choose one of {', '.join(ARCHITECTURES)}")
    block, layers, width = ARCHITECTURES[name]
    with torch.device("meta"):
        net = ResNet(block, layers, width=width)
    return {k: v.shape for k, v in net.state_dict().items()}


def _short(keys: list[str], n: int = 8) -> str:
    more = f" … (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _check_keys(state: Mapping[str, Tensor], expected: set[str], version: str,
                source: str) -> None:
    """Every alias present, nothing unknown: otherwise a VweError naming the keys."""
    missing = sorted(expected - set(state))
    unknown = sorted(set(state) - expected)
    if missing or unknown:
        parts = [f"{len(missing)} missing: {_short(missing)}"] if missing else []
        parts += [f"{len(unknown)} unknown: {_short(unknown)}"] if unknown else []
        raise VweError(f"{source} is not a '{version}' checkpoint of the authors "
                       f"({'; '.join(parts)}); "
                       "check --format (ijcai-code: resnet50, vwl-l/vwl-m: resnet101)")


def _pick(state: Mapping[str, Tensor], our_key: str, aliases: list[str]) -> tuple[Tensor, bool]:
    """The winning (last-loaded) alias, and whether any other alias disagrees with it."""
    value = state[aliases[-1]]
    differs = any(state[a].shape != value.shape or not torch.equal(state[a], value)
                  for a in aliases[:-1])
    return value, differs


def convert_authors_state_dict(state: Mapping[str, Tensor], version: str,
                               backbone: str | None = None, num_classes: int | None = None,
                               source: str = "the checkpoint") -> tuple[dict[str, Tensor], str]:
    """The authors' checkpoint → (`CamNet` state dict, preset name); strict key check
    (docs/method.md#state-dict-layout).

    `backbone` overrides the version's network (tests use small ones); `source` names the file
    in error messages.
    """
    info = _version(version)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    shapes = _backbone_shapes(backbone or info.backbone)
    mapping = _alias_map(list(shapes), info.has_codebook)
    _check_keys(state, {a for aliases in mapping.values() for a in aliases}, version, source)
    ours, conflicts = {}, []
    for our_key, aliases in mapping.items():
        value, differs = _pick(state, our_key, aliases)
        if differs:
            conflicts.append(our_key)
        ours[our_key] = value.flatten(1) if our_key == "codebook.weight" else value
    bad = [k for k, s in shapes.items() if ours[f"backbone.{k}"].shape != s]
    if bad:
        raise VweError(f"{source}: backbone tensors of the wrong shape for "
                       f"{backbone or info.backbone}: {_short(bad)}")
    if num_classes is not None and ours["classifier.weight"].shape[0] != num_classes:
        raise VweError(f"{source} has {ours['classifier.weight'].shape[0]} classes, "
                       f"expected {num_classes}")
    if conflicts:
        log.warning("%d tensors differ between aliases; kept the backbone.*/newly_added.* copies "
                    "(the authors' load order): %s", len(conflicts), _short(conflicts))
    return ours, info.preset
