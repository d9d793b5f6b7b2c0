"""The authors' checkpoint layout (docs/method.md#state-dict-layout): round trip, alias conflicts,
key errors."""

from __future__ import annotations

import pytest
import torch

from vwe.config import load_config
from vwe.errors import VweError
from vwe.models.authors_weights import authors_state_dict, convert_authors_state_dict
from vwe.models.cam_net import CamNet

PRESET = {"ijcai-code": "ijcai-code", "vwl-l": "vwl-l", "vwl-m": "vwl-m"}


def tiny(version: str, seed: int) -> CamNet:
    cfg = load_config(None, [f"preset={version}", "model.backbone=resnet_tiny",
                             "model.pretrained=none", "model.num_words=6"])
    torch.manual_seed(seed)
    return CamNet(cfg.model, 3)


@pytest.mark.parametrize("version", ["ijcai-code", "vwl-l", "vwl-m"])
def test_round_trip_gives_the_same_network(version: str) -> None:
    source, target = tiny(version, 0), tiny(version, 1)
    checkpoint = authors_state_dict(source, version, prefix="module.")
    n_backbone = sum(k.startswith("backbone.") for k in source.state_dict())
    n_heads = 4 if version != "vwl-m" else 3
    assert len(checkpoint) == 3 * n_backbone + 2 * n_heads
    ours, preset = convert_authors_state_dict(checkpoint, version, backbone="resnet_tiny",
                                              num_classes=3)
    assert preset == PRESET[version]
    target.load_state_dict(ours, strict=True)
    codebook = None if version != "vwl-m" else torch.randn(6, source.feature_dim)
    images = torch.randn(1, 3, 72, 68)  # 5×5 features: the authors' HSPP needs sides ≥ 4
    with torch.no_grad():
        a, b = source(images, codebook), target(images, codebook)
    assert torch.equal(a.img_logits, b.img_logits)
    assert torch.equal(a.w2i_logits, b.w2i_logits)
    assert torch.equal(a.word_logits, b.word_logits)


def test_alias_names_follow_their_net() -> None:
    ckpt = authors_state_dict(tiny("ijcai-code", 0), "ijcai-code")
    keys = list(ckpt)
    assert keys[0] == "resnet.conv1.weight" and keys[-1] == "newly_added.3.weight"
    assert torch.equal(ckpt["stage1.0.weight"], ckpt["resnet.conv1.weight"])
    assert torch.equal(ckpt["stage1.1.running_var"], ckpt["resnet.bn1.running_var"])
    assert torch.equal(ckpt["backbone.0.4.0.conv1.weight"], ckpt["resnet.layer1.0.conv1.weight"])
    assert torch.equal(ckpt["stage2.0.0.conv2.weight"], ckpt["resnet.layer2.0.conv2.weight"])
    assert torch.equal(ckpt["backbone.3.0.0.downsample.1.num_batches_tracked"],
                       ckpt["resnet.layer4.0.downsample.1.num_batches_tracked"])
    assert ckpt["VWE.centroid"].shape == (6, 128, 1, 1)
    assert torch.equal(ckpt["newly_added.1.centroid"], ckpt["VWE.centroid"])
    assert torch.equal(ckpt["newly_added.2.weight"], ckpt["fc_a.weight"])
    assert torch.equal(ckpt["newly_added.3.weight"], ckpt["fc_b.weight"])
    heads = [k for k in keys if not k.startswith(("resnet.", "stage", "backbone."))]
    assert heads == ["classifier.weight", "fc_a.weight", "fc_b.weight", "VWE.centroid",
                     "newly_added.0.weight", "newly_added.1.centroid", "newly_added.2.weight",
                     "newly_added.3.weight"]
    mbk = authors_state_dict(tiny("vwl-m", 0), "vwl-m")
    assert torch.equal(mbk["newly_added.1.weight"], mbk["fc_a.weight"])
    assert torch.equal(mbk["newly_added.2.weight"], mbk["fc_b.weight"])
    assert "VWE.centroid" not in mbk


@pytest.mark.parametrize(("version", "keys", "params"),
                         [("ijcai-code", 962, 24_602_688), ("vwl-l", 1880, 43_594_816),
                          ("vwl-m", 1878, 43_070_528)])
def test_full_size_layout_counts(version: str, keys: int, params: int) -> None:
    cfg = load_config(None, [f"preset={version}", "model.pretrained=none"])
    with torch.device("meta"):  # no memory, no init cost
        net = CamNet(cfg.model, 20)
    # the authors' counts (docs/method.md#heads-and-initialisation)
    assert sum(p.numel() for p in net.parameters()) == params
    # 962 / 1880 / 1878 keys (docs/method.md#state-dict-layout)
    assert len(authors_state_dict(net, version)) == keys


def test_backbone_and_newly_added_copies_win() -> None:
    source = tiny("vwl-l", 0)
    ckpt = authors_state_dict(source, "vwl-l", prefix="module.")
    ckpt = {k: v.clone() for k, v in ckpt.items()}
    ckpt["module.resnet.layer3.0.conv1.weight"].add_(1.0)
    ckpt["module.stage3.0.0.conv1.weight"].add_(2.0)
    ckpt["module.classifier.weight"].zero_()
    ckpt["module.VWE.centroid"].zero_()
    ours, _ = convert_authors_state_dict(ckpt, "vwl-l", backbone="resnet_tiny")
    state = source.state_dict()
    for key in ("backbone.layer3.0.conv1.weight", "classifier.weight", "codebook.weight"):
        assert torch.equal(ours[key], state[key])


def test_missing_and_unknown_keys() -> None:
    ckpt = authors_state_dict(tiny("ijcai-code", 0), "ijcai-code", prefix="module.")
    broken = dict(ckpt)
    del broken["module.stage2.0.0.bn1.running_mean"]
    broken["module.projector.weight"] = torch.zeros(1)
    with pytest.raises(VweError, match="final.pth .*1 missing: stage2.0.0.bn1.running_mean.*"
                                       "1 unknown: projector.weight"):
        convert_authors_state_dict(broken, "ijcai-code", backbone="resnet_tiny",
                                   source="final.pth")
    with pytest.raises(VweError, match="unknown: VWE.centroid"):
        convert_authors_state_dict(ckpt, "vwl-m", backbone="resnet_tiny")
    with pytest.raises(VweError, match="missing"):  # a resnet_tiny checkpoint is not a resnet50
        convert_authors_state_dict(ckpt, "ijcai-code")
    with pytest.raises(VweError, match="expected 20"):
        convert_authors_state_dict(ckpt, "ijcai-code", backbone="resnet_tiny", num_classes=20)
    with pytest.raises(VweError, match="format"):
        convert_authors_state_dict(ckpt, "vwl-x")
