"""CamNet per preset: shapes, losses, gradient routing (docs/method.md#gradient-routing)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vwe.config import LossWeights, load_config
from vwe.errors import VweError
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.hybrid_pool import hybrid_pool

PRESETS = ["paper", "ijcai-code", "vwl-l", "vwl-m"]
K, C = 8, 4


def build(preset: str, *overrides: str) -> tuple[CamNet, object]:
    cfg = load_config(None, [f"preset={preset}", "model.backbone=resnet_tiny",
                             "model.pretrained=none", f"model.num_words={K}", *overrides])
    torch.manual_seed(0)
    return CamNet(cfg.model, C), cfg


def codebook_for(net: CamNet) -> torch.Tensor | None:
    return None if net.codebook is not None else torch.randn(K, net.feature_dim)


def run(net: CamNet, cfg, images: torch.Tensor, codebook: torch.Tensor | None):
    out = net(images, codebook)
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    learned = net.codebook.weight if net.codebook is not None else None
    return out, cam_losses(out, labels, cfg.train_cam.losses, learned)


@pytest.mark.parametrize("preset", PRESETS)
def test_forward_shapes_and_finite_losses(preset: str) -> None:
    net, cfg = build(preset)
    images = torch.randn(2, 3, 72, 88)  # features 5×6 (the authors' HSPP needs sides ≥ 4)
    out, losses = run(net, cfg, images, codebook_for(net))
    assert out.img_logits.shape == (2, C) and out.w2i_logits.shape == (2, C)
    assert out.word_logits.shape == (2, K) and out.word_targets.shape == (2, K)
    assert out.features.shape == (2, net.feature_dim, 5, 6)
    assert out.word_probs.shape == (2, K, 5, 6) and out.word_labels.shape == (2, 5, 6)
    assert out.word_labels.dtype == torch.long
    assert torch.allclose(out.word_probs.sum(1), torch.ones(2, 5, 6))
    presence = F.one_hot(out.word_labels.flatten(1), K).amax(1).float()
    assert torch.equal(out.word_targets, presence)
    assert all(torch.isfinite(v) for v in losses.values())
    expected = {"img", "word", "w2i", "entropy", "total"} | (
        {"decov"} if net.codebook is not None else set())
    assert set(losses) == expected


@pytest.mark.parametrize("preset", PRESETS)
def test_logits_by_second_path(preset: str) -> None:
    net, cfg = build(preset)
    codebook = codebook_for(net)
    out = net(torch.randn(2, 3, 66, 70), codebook)  # 5×5 features: the cell modes differ
    feats = out.features
    pooled = hybrid_pool(feats, 2.0, (1, 2, 4), cfg.model.hspp_cells)
    assert torch.allclose(out.img_logits, pooled @ net.classifier.weight[:, :, 0, 0].T, atol=1e-5)
    word_in = pooled if cfg.model.word_logits_from == "hspp" else feats.mean((2, 3))
    assert torch.allclose(out.word_logits, word_in @ net.word_classifier.weight[:, :, 0, 0].T,
                          atol=1e-5)
    hist = out.word_probs.sum((2, 3))
    if cfg.model.word_histogram == "mean":
        hist = hist / (feats.shape[2] * feats.shape[3])
    assert torch.allclose(out.w2i_logits, hist @ net.w2i.weight[:, :, 0, 0].T, atol=1e-5)


def grads(loss: torch.Tensor, net: CamNet) -> dict[str, bool]:
    """Which parts of the network get a non-zero gradient from `loss`."""
    parts = {"stem": net.backbone.conv1, "layer1": net.backbone.layer1,
             "layer2": net.backbone.layer2, "layer3": net.backbone.layer3,
             "layer4": net.backbone.layer4, "classifier": net.classifier, "w2i": net.w2i,
             "word_classifier": net.word_classifier}
    if net.codebook is not None:
        parts["codebook"] = net.codebook
    params = {name: [p for p in m.parameters() if p.requires_grad] for name, m in parts.items()}
    flat = [p for ps in params.values() for p in ps]
    if loss.grad_fn is None:
        return {name: False for name in parts}
    got = iter(torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=True))
    reached = {}
    for name, ps in params.items():
        gs = [next(got) for _ in ps]
        reached[name] = any(g is not None and bool(g.abs().sum() > 0) for g in gs)
    return reached


def reached(flags: dict[str, bool]) -> set[str]:
    return {name for name, hit in flags.items() if hit}


@pytest.mark.parametrize("preset", PRESETS)
def test_which_loss_reaches_which_parameters(preset: str) -> None:
    net, cfg = build(preset)
    out, losses = run(net, cfg, torch.randn(2, 3, 64, 64), codebook_for(net))
    trunk = {"layer3", "layer4"} | ({"layer1", "layer2"} if preset == "vwl-m" else set())
    assert reached(grads(losses["img"], net)) == trunk | {"classifier"}
    assert reached(grads(losses["word"], net)) == trunk | {"word_classifier"}
    if preset == "vwl-m":  # weight 0: logged only, fc_a never trained
        assert losses["w2i"].grad_fn is None
        assert reached(grads(losses["total"], net)) == trunk | {"classifier", "word_classifier"}
    else:  # input detached: only the head and the codebook learn from w2i
        assert reached(grads(losses["w2i"], net)) == {"w2i", "codebook"}
        if preset == "vwl-l":
            assert reached(grads(losses["decov"], net)) == {"codebook"}
        else:
            assert losses["decov"].grad_fn is None  # weight 0: logged only
        assert reached(grads(losses["total"], net)) == trunk | {
            "classifier", "word_classifier", "w2i", "codebook"}
    assert losses["entropy"].grad_fn is None  # weight 0 everywhere


def test_total_is_the_weighted_sum() -> None:
    net, cfg = build("vwl-l")
    out = net(torch.randn(2, 3, 32, 32))
    labels = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    weights = LossWeights(img=1.0, word=0.5, w2i=2.0, decov=3.0, entropy=0.1)
    losses = cam_losses(out, labels, weights, net.codebook.weight)
    expected = (losses["img"] + 0.5 * losses["word"] + 2 * losses["w2i"] + 3 * losses["decov"]
                + 0.1 * losses["entropy"])
    assert torch.allclose(losses["total"], expected)
    z = out.img_logits
    y = labels
    mlsm = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()
    assert torch.allclose(losses["img"], mlsm)
    with pytest.raises(VweError, match="decov"):
        cam_losses(out, labels, weights, None)


def test_cam_maps() -> None:
    net, _ = build("paper")
    images = torch.randn(1, 3, 50, 33)
    img_cam, word_cam = net.cam_maps(images)
    assert word_cam is None
    out = net(images)
    expected = torch.einsum("cd,ndhw->nchw", net.classifier.weight[:, :, 0, 0], out.features)
    assert img_cam.shape == (1, C, 4, 3)
    assert torch.allclose(img_cam, expected.clamp(min=0), atol=1e-5)
    _, word_cam = net.cam_maps(images, with_word_cam=True)
    expected = torch.einsum("ck,nkhw->nchw", net.w2i.weight[:, :, 0, 0], out.word_probs)
    assert torch.allclose(word_cam, expected.clamp(min=0), atol=1e-6)


def test_memory_bank_needs_codebook_and_checks_shape() -> None:
    net, _ = build("vwl-m")
    assert net.codebook is None and not any("codebook" in k for k in net.state_dict())
    with pytest.raises(ValueError, match="codebook"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="codebook must be"):
        net(torch.randn(1, 3, 32, 32), torch.randn(K + 1, net.feature_dim))


def test_param_groups_and_freezing() -> None:
    net, _ = build("ijcai-code")
    groups = net.param_groups(lr=0.01, new_lr_mult=10.0, weight_decay=1e-4)
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.1)]
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    bb = net.backbone
    trainable_backbone = list(bb.layer3.parameters()) + list(bb.layer4.parameters())
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in trainable_backbone}
    new = [net.classifier.weight, net.w2i.weight, net.word_classifier.weight,
           net.codebook.weight]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in new}
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == {id(p) for g in groups for p in g["params"]}

    net, _ = build("vwl-m")
    groups = net.param_groups(0.01, 10.0, 1e-4)
    assert not bb.conv1.weight.requires_grad
    ids = {id(p) for p in groups[0]["params"]}
    assert id(net.backbone.layer1[0].conv1.weight) in ids
    assert id(net.backbone.conv1.weight) not in ids and id(net.backbone.bn1.weight) not in ids
    assert len(groups[1]["params"]) == 3

    net, _ = build("vwl-m", "model.freeze_stem=false")
    assert net.backbone.conv1.weight.requires_grad


def test_train_flag_has_no_effect() -> None:
    net, _ = build("paper")
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = net.train()(images).img_logits
        b = net.eval()(images).img_logits
    assert torch.equal(a, b)


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(VweError, match="model.word_histogram"):
        build("paper", "model.word_histogram=median")
    with pytest.raises(VweError, match="model.codebook"):
        build("paper", "model.codebook=kmeans")
