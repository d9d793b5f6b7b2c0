"""DeepLabV2 model side (docs/segmentation.md#deeplabv2): sizes, ASPP, MSC, losses, groups, weights,
frozen BN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vwe.engine.optim import poly_factor, set_poly_lr
from vwe.errors import VweError
from vwe.models import deeplab as dl
from vwe.models.backbone import FixedBatchNorm2d
from vwe.models.deeplab import (
    ASPP,
    MSC,
    DeepLabV2,
    build_deeplab,
    input_normalization,
    load_deeplab_init,
    param_groups,
    resize_labels,
)
from vwe.models.deeplab_caffe import CaffeResNet
from vwe.models.seg_loss import msc_loss

R101 = (3, 4, 23, 3)


# ------------------------------------------------------------------ helpers (independent of src)

def caffe_side(s: int) -> int:
    """docs/segmentation.md#backbone: conv1 floor, ceil max-pool, res3's strided 1×1 floor."""
    n1 = (s - 1) // 2 + 1
    n2 = math.ceil((n1 - 1) / 2) + 1
    return (n2 - 1) // 2 + 1


def torchvision_side(s: int) -> int:
    """Three pad-1/pad-3 stride-2 reductions, each ⌈s/2⌉."""
    for _ in range(3):
        s = math.ceil(s / 2)
    return s


def kz_shapes(width: int = 64, blocks=R101) -> dict[str, tuple[int, ...]]:
    """The KZ key pattern of docs/segmentation.md#backbone with each tensor's shape
    (num_batches_tracked included)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def unit(prefix: str, out_ch: int, in_ch: int, k: int) -> None:
        shapes[f"{prefix}.conv.weight"] = (out_ch, in_ch, k, k)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{name}"] = (out_ch,)
        shapes[f"{prefix}.bn.num_batches_tracked"] = ()

    unit("layer1.conv1", width, 3, 7)
    in_ch = width
    for i, count in enumerate(blocks):
        planes, out_ch = width * 2**i, 4 * width * 2**i
        for k in range(1, count + 1):
            first_in = in_ch if k == 1 else out_ch
            unit(f"layer{i + 2}.block{k}.reduce", planes, first_in, 1)
            unit(f"layer{i + 2}.block{k}.conv3x3", planes, planes, 3)
            unit(f"layer{i + 2}.block{k}.increase", out_ch, planes, 1)
            if k == 1:
                unit(f"layer{i + 2}.block{k}.shortcut", out_ch, in_ch, 1)
        in_ch = out_ch
    return shapes


def random_kz_file(width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the KZ layout plus a 1000-way ImageNet `fc` to be dropped."""
    gen = torch.Generator().manual_seed(seed)
    state = {key: torch.randn(shape, generator=gen) if shape else torch.tensor(0)
             for key, shape in kz_shapes(width).items()}
    for key in state:
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 0.5
    state["fc.weight"] = torch.randn(1000, 32 * width)
    state["fc.bias"] = torch.randn(1000)
    return state


def slim_caffe(num_classes: int = 5, width: int = 4, scales=(0.5, 0.75)) -> MSC:
    """Full R101 depth and Caffe layout at a tiny width: same shapes arithmetic, cheap."""
    torch.manual_seed(0)
    return MSC(DeepLabV2(CaffeResNet(R101, width=width), num_classes, layout="caffe"), scales)


def tiny_tv(num_classes: int = 5, **kwargs) -> MSC:
    torch.manual_seed(0)
    return build_deeplab(num_classes, backbone="resnet_tiny", layout="torchvision", **kwargs)


@pytest.fixture(scope="module")
def r101_caffe() -> MSC:
    torch.manual_seed(0)
    return build_deeplab(21, layout="caffe").eval()


@pytest.fixture(scope="module")
def r101_tv() -> MSC:
    torch.manual_seed(0)
    return build_deeplab(21, layout="torchvision").eval()


# --------------------------------------------------- backbone sizes (docs/segmentation.md#backbone)

@pytest.mark.parametrize("side, caffe, tv", [(321, 41, 41), (513, 65, 65), (500, 63, 63),
                                             (353, 45, 45), (319, 41, 40)])
def test_spec_size_table(side: int, caffe: int, tv: int) -> None:
    assert (caffe_side(side), torchvision_side(side)) == (caffe, tv)


@pytest.mark.parametrize("h, w", [(321, 321), (319, 319), (375, 500), (353, 33), (64, 97),
                                  (17, 18)])
def test_output_size_both_layouts(h: int, w: int) -> None:
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        caffe = slim_caffe().base(x)
        tv = tiny_tv().base(x)
    assert caffe.shape == (1, 5, caffe_side(h), caffe_side(w))
    assert tv.shape == (1, 5, torchvision_side(h), torchvision_side(w))


def test_real_r101_sizes_and_params(r101_caffe: MSC, r101_tv: MSC) -> None:
    x = torch.randn(1, 3, 63, 63)  # 63 → 9 (caffe) vs 8 (torchvision), like 319 → 41 vs 40
    with torch.no_grad():
        assert r101_caffe.base(x).shape == (1, 21, 9, 9)
        assert r101_tv.base(x).shape == (1, 21, 8, 8)
        assert r101_caffe.base.backbone(x)[-1].shape[1] == 2048
    for model in (r101_caffe, r101_tv):  # docs/segmentation.md#backbone counts
        base = model.base
        assert sum(p.numel() for p in base.parameters()) == 44_048_532
        assert sum(m.weight.numel() for m in base.backbone.modules()
                   if isinstance(m, nn.Conv2d)) == 42_394_816
        assert sum(p.numel() for m in base.modules() if isinstance(m, nn.BatchNorm2d)
                   for p in m.parameters()) == 105_344
        assert sum(p.numel() for p in base.aspp.parameters()) == 1_548_372
        assert all(type(m) is FixedBatchNorm2d for m in base.modules()
                   if isinstance(m, nn.BatchNorm2d))


def test_caffe_keys_match_kz_layout(r101_caffe: MSC) -> None:
    state = r101_caffe.base.state_dict()
    backbone = {k.removeprefix("backbone."): tuple(v.shape) for k, v in state.items()
                if k.startswith("backbone.")}
    assert backbone == kz_shapes(64)
    assert len(state) == 632 and sum(k.endswith("num_batches_tracked") for k in state) == 104


def test_dilations_every_block(r101_caffe: MSC, r101_tv: MSC) -> None:
    tv = r101_tv.base.backbone
    for layer, dilation in ((tv.layer3, 2), (tv.layer4, 4)):
        for block in layer:
            assert block.conv2.dilation == (dilation, dilation) == block.conv2.padding
            assert block.conv2.stride == (1, 1)
    assert tv.layer2[0].conv2.stride == (2, 2) and tv.layer2[0].conv1.stride == (1, 1)
    caffe = r101_caffe.base.backbone
    for layer, dilation in ((caffe.layer4, 2), (caffe.layer5, 4)):
        for block in layer:
            assert block.conv3x3.conv.dilation == (dilation, dilation)
            assert block.reduce.conv.stride == (1, 1)
    assert caffe.layer3.block1.reduce.conv.stride == (2, 2)
    assert caffe.layer3.block1.conv3x3.conv.stride == (1, 1)
    assert caffe.layer1.pool.ceil_mode


# ------------------------------- ASPP and MSC (docs/segmentation.md#aspp, docs/segmentation.md#msc)

def test_aspp_is_sum_of_four_dilated_convs() -> None:
    torch.manual_seed(0)
    aspp = ASPP(6, 3)
    x = torch.randn(2, 6, 30, 30)
    manual = sum(F.conv2d(x, c.weight, c.bias, padding=r, dilation=r)
                 for c, r in zip(aspp.branches, (6, 12, 18, 24)))
    torch.testing.assert_close(aspp(x), manual)


def test_aspp_init() -> None:
    torch.manual_seed(0)
    aspp = ASPP(2048, 21)
    weights = torch.cat([c.weight.flatten() for c in aspp.branches])
    assert abs(weights.std().item() - 0.01) < 2e-4 and abs(weights.mean().item()) < 2e-4
    assert all(torch.equal(c.bias, torch.zeros(21)) for c in aspp.branches)


def test_msc_max_fusion() -> None:
    model = tiny_tv()
    x = torch.randn(1, 3, 64, 96)  # ×0.5, ×0.75 are whole sizes: size and factor agree
    with torch.no_grad():
        l1 = model.base(x)
        pyramid = [model.base(F.interpolate(x, size=(int(64 * p), int(96 * p)),
                                            mode="bilinear", align_corners=False))
                   for p in (0.5, 0.75)]
        up = [F.interpolate(lp, size=l1.shape[-2:], mode="bilinear", align_corners=False)
              for lp in pyramid]
        expected = torch.maximum(l1, torch.maximum(up[0], up[1]))
        fused = model.eval()(x)
        outs = model.train()(x)
    torch.testing.assert_close(fused, expected)
    assert len(outs) == 4
    for got, want in zip(outs, [l1, *pyramid, expected]):
        torch.testing.assert_close(got, want)


def test_msc_training_sizes_kz() -> None:
    outs = slim_caffe().train()(torch.randn(1, 3, 321, 321))
    assert [o.shape[-1] for o in outs] == [41, 21, 31, 41]


def test_msc_without_scales() -> None:
    model = tiny_tv(msc_scales=())
    x = torch.randn(1, 3, 40, 40)
    assert isinstance(model.eval()(x), torch.Tensor)
    assert len(model.train()(x)) == 1


# --------------------- losses (docs/segmentation.md#msc, docs/segmentation.md#loss-and-lr-formulas)

def hand_ce(logits: torch.Tensor, labels: torch.Tensor, ignore: int = 255) -> float:
    """Loop over pixels: −log softmax at the label, mean over non-ignored pixels."""
    total, count = 0.0, 0
    n, c, h, w = logits.shape
    for b in range(n):
        for i in range(h):
            for j in range(w):
                y = int(labels[b, i, j])
                if y == ignore:
                    continue
                z = [float(logits[b, k, i, j]) for k in range(c)]
                total += math.log(sum(math.exp(v) for v in z)) - z[y]
                count += 1
    return total / count


def bilinear_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """1-D bilinear weights, align_corners=False, edge-clamped (half-pixel centres)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(src), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        m[i, lo] += 1 - frac
        m[i, hi] += frac
    return m


@pytest.fixture
def loss_case() -> tuple[list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    labels = torch.tensor([[[0, 1, 2, 255], [1, 1, 0, 2], [255, 2, 2, 0], [0, 0, 1, 1]]])
    outs = [torch.randn(1, 3, 4, 4, generator=gen), torch.randn(1, 3, 2, 2, generator=gen),
            torch.randn(1, 3, 3, 3, generator=gen)]
    return outs, labels


def test_msc_loss_kz_sum_at_own_sizes(loss_case) -> None:
    outs, labels = loss_case
    # nearest-exact (PIL NEAREST): source index ⌊(i + ½)·in/out⌋
    lab2 = labels[:, [1, 3]][:, :, [1, 3]]
    lab3 = labels[:, [0, 2, 3]][:, :, [0, 2, 3]]
    expected = hand_ce(outs[0], labels) + hand_ce(outs[1], lab2) + hand_ce(outs[2], lab3)
    assert msc_loss(outs, labels, "deeplab").item() == pytest.approx(expected, rel=1e-5)


def test_msc_loss_rl_mean_at_l1_size(loss_case) -> None:
    outs, labels = loss_case
    terms = [hand_ce(outs[0], labels)]
    for out in outs[1:]:
        m = bilinear_matrix(4, out.shape[-1])
        terms.append(hand_ce(m @ out @ m.T, labels))
    got = msc_loss(outs, labels, "vwe-author").item()
    assert got == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_resize_labels_equals_pil_nearest() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, size=(321, 250)).astype(np.uint8)
    label[::7] = 255
    for size in ((41, 32), (21, 16), (31, 24), (400, 300)):
        pil = np.asarray(Image.fromarray(label).resize(size[::-1], Image.NEAREST))
        got = resize_labels(torch.from_numpy(label).long()[None], size)[0].numpy()
        np.testing.assert_array_equal(got, pil)


def test_ce_ignores_255_and_never_nan() -> None:
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    labels = torch.randint(0, 4, (2, 3, 3))
    labels[0, 0] = 255
    torch.testing.assert_close(msc_loss([logits], labels),
                               F.cross_entropy(logits, labels, ignore_index=255))
    empty = torch.full((2, 3, 3), 255)
    for loss_type in ("ce", "balanced_ce"):
        loss = msc_loss([logits], empty, loss=loss_type)
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_balanced_ce_hand_and_guards() -> None:
    logits = torch.randn(1, 3, 2, 3)
    labels = torch.tensor([[[0, 0, 1], [2, 255, 0]]])
    per = [[-(torch.log_softmax(logits[0, :, i, j], 0)[labels[0, i, j]]).item()
            if labels[0, i, j] != 255 else 0.0 for j in range(3)] for i in range(2)]
    bg = (per[0][0] + per[0][1] + per[1][2]) / 3
    fg = (per[0][2] + per[1][0]) / 2
    def balanced(labels):
        return msc_loss([logits], labels, loss="balanced_ce").item()

    assert balanced(labels) == pytest.approx((bg + fg) / 2, 1e-5)
    only_bg = torch.tensor([[[0, 0, 255], [0, 255, 0]]])
    assert balanced(only_bg) == pytest.approx(hand_ce(logits, only_bg), rel=1e-5)
    only_fg = torch.tensor([[[1, 2, 255], [2, 1, 1]]])
    assert balanced(only_fg) == pytest.approx(hand_ce(logits, only_fg), rel=1e-5)
    assert msc_loss([logits], labels, loss="balanced_ce").item() == pytest.approx(
        (bg + fg) / 2, rel=1e-5)


def test_unknown_recipe_and_loss() -> None:
    with pytest.raises(VweError, match="recipe"):
        msc_loss([torch.zeros(1, 2, 2, 2)], torch.zeros(1, 2, 2, dtype=torch.long), "kz")
    with pytest.raises(VweError, match="train_seg.loss=focal"):
        msc_loss([torch.zeros(1, 2, 2, 2)], torch.zeros(1, 2, 2, dtype=torch.long), loss="focal")


# ----- optimiser (docs/segmentation.md#training-recipes, docs/segmentation.md#loss-and-lr-formulas)

def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_param_groups_deeplab() -> None:
    model = tiny_tv()
    groups = {g["name"]: g for g in param_groups(model, 2.5e-4, 5e-4, "deeplab")}
    aspp = model.base.aspp.branches
    assert _ids(groups["aspp_weight"]["params"]) == _ids(c.weight for c in aspp)
    assert _ids(groups["aspp_bias"]["params"]) == _ids(c.bias for c in aspp)
    convs = [m.weight for m in model.base.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert _ids(groups["backbone"]["params"]) == _ids(convs)
    assert [(g["lr"], g["lr_mult"], g["weight_decay"]) for g in groups.values()] == [
        (2.5e-4, 1.0, 5e-4), (pytest.approx(2.5e-3), 10.0, 5e-4), (pytest.approx(5e-3), 20.0, 0.0)]
    bn = _ids(p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert not bn & _ids(p for g in groups.values() for p in g["params"])


def test_param_groups_vwe_author_and_frozen_stem() -> None:
    model = tiny_tv(freeze_stem=True)
    (group,) = param_groups(model, 1e-3, 5e-4, "vwe_author")
    convs = [m.weight for m in model.base.modules() if isinstance(m, nn.Conv2d)
             and m is not model.base.backbone.conv1]
    assert _ids(group["params"]) == _ids(convs)
    assert (group["lr"], group["weight_decay"]) == (1e-3, 5e-4)
    assert not model.base.backbone.conv1.weight.requires_grad


def test_training_step_keeps_bn_and_rl_bias_fixed() -> None:
    model = tiny_tv()
    optimizer = torch.optim.SGD(param_groups(model, 0.1, 5e-4, "vwe_author"), lr=0.1,
                                momentum=0.9)
    bn = model.base.backbone.layer1[0].bn1
    before = [t.clone() for t in (bn.weight, bn.running_mean, bn.running_var)]
    conv_before = model.base.backbone.conv1.weight.clone()
    model.train()
    x, y = torch.randn(2, 3, 48, 48), torch.randint(0, 5, (2, 48, 48))
    msc_loss(model(x), y, "vwe_author").backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, (bn.weight, bn.running_mean,
                                                          bn.running_var)))
    assert all(torch.equal(c.bias, torch.zeros(5)) for c in model.base.aspp.branches)
    assert not torch.equal(conv_before, model.base.backbone.conv1.weight)


def test_poly_lr_and_staircase() -> None:
    assert [poly_factor(s, 100, 0.9, 10) for s in range(10)] == [1.0] * 10
    assert poly_factor(19, 100, 0.9, 10) == pytest.approx(0.9**0.9)
    assert poly_factor(1, 100, 0.9) == pytest.approx(0.99**0.9)
    assert poly_factor(100, 100, 0.9) == 0.0 and poly_factor(120, 100, 0.9) == 0.0
    model = tiny_tv()
    optimizer = torch.optim.SGD(param_groups(model, 2.5e-4), lr=2.5e-4, momentum=0.9)
    set_poly_lr(optimizer, 10, 100, 0.9, update_every=10)
    factor = 0.9**0.9
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
        [2.5e-4 * factor, 2.5e-3 * factor, 5e-3 * factor])


# ------------------------------------------------------ frozen BN (docs/segmentation.md#batch-norm)

@pytest.mark.parametrize("make", [slim_caffe, tiny_tv])
def test_bn_frozen_after_train(make) -> None:
    model = make()
    x = torch.randn(2, 3, 40, 40)
    stats = [b.clone() for n, b in model.named_buffers() if "running" in n]
    model.eval()
    with torch.no_grad():
        reference = model.base(x)
        model.train()
        trained = model.base(x)
    assert all(m.training for m in model.modules())
    torch.testing.assert_close(trained, reference)
    assert all(torch.equal(a, b) for a, b in
               zip(stats, [b for n, b in model.named_buffers() if "running" in n]))


# ---------------------------------------------------- weights (docs/segmentation.md#initialisation)

WIDTH = 8  # slim Caffe R101: 256-channel res5


def slim_for_file(num_classes: int = 5) -> MSC:
    return slim_caffe(num_classes, width=WIDTH)


def test_caffe_file_loads_key_for_key(tmp_path) -> None:
    state = random_kz_file(WIDTH)
    path = tmp_path / "deeplabv1_resnet101-imagenet.pth"
    torch.save(state, path)
    model = slim_for_file()
    aspp_before = model.base.aspp.branches[2].weight.clone()
    load_deeplab_init(model, str(path), "caffe", "voc")
    got = model.base.backbone.state_dict()
    for key in ("layer1.conv1.conv.weight", "layer1.conv1.bn.bias",
                "layer4.block17.conv3x3.conv.weight", "layer5.block1.shortcut.bn.running_var",
                "layer3.block4.increase.bn.running_mean"):
        assert torch.equal(got[key], state[key]), key
    assert torch.equal(model.base.aspp.branches[2].weight, aspp_before)  # no ASPP in file


def test_caffe_file_aspp_and_counters(tmp_path) -> None:
    state = {k: v for k, v in random_kz_file(WIDTH).items()
             if not k.endswith("num_batches_tracked")}
    for i in range(4):
        state[f"aspp.c{i}.weight"] = torch.randn(5, 32 * WIDTH, 3, 3)
        state[f"aspp.c{i}.bias"] = torch.randn(5)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "a.pth")
    model = slim_for_file()
    load_deeplab_init(model, str(tmp_path / "a.pth"), dataset_name="voc")
    assert torch.equal(model.base.aspp.branches[3].bias, state["aspp.c3.bias"])
    other = slim_for_file(num_classes=7)  # ASPP of another class count is dropped
    before = other.base.aspp.branches[0].weight.clone()
    load_deeplab_init(other, str(tmp_path / "a.pth"), dataset_name="voc")
    assert torch.equal(other.base.aspp.branches[0].weight, before)


def test_caffe_file_missing_tensor(tmp_path) -> None:
    state = random_kz_file(WIDTH)
    del state["layer5.block3.increase.bn.running_var"], state["layer2.block1.shortcut.conv.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(VweError) as err:
        load_deeplab_init(slim_for_file(), str(path), "caffe", "voc")
    for text in ("broken.pth", "layer5.block3.increase.bn.running_var",
                 "layer2.block1.shortcut.conv.weight", "2 backbone"):
        assert text in str(err.value)


def test_caffe_file_wrong_width(tmp_path) -> None:
    torch.save(random_kz_file(4), tmp_path / "w4.pth")
    with pytest.raises(VweError, match="does not fit"):
        load_deeplab_init(slim_for_file(), str(tmp_path / "w4.pth"), "caffe", "voc")


def test_coco_init_refused_for_coco(tmp_path) -> None:
    state = random_kz_file(WIDTH)
    state["fc.weight"], state["fc.bias"] = torch.randn(91, 32 * WIDTH, 1, 1), torch.randn(91)
    torch.save(state, tmp_path / "init.pth")  # recognised by its 91-class head
    with pytest.raises(VweError, match="refused"):
        load_deeplab_init(slim_for_file(), str(tmp_path / "init.pth"), "caffe", "coco2014")
    load_deeplab_init(slim_for_file(), str(tmp_path / "init.pth"), "caffe", "voc")
    torch.save(random_kz_file(WIDTH), tmp_path / "plain.pth")
    with pytest.raises(VweError, match="refused"):  # flagged explicitly
        load_deeplab_init(slim_for_file(), str(tmp_path / "plain.pth"), "caffe", "coco",
                          coco_init=True)
    load_deeplab_init(slim_for_file(), str(tmp_path / "plain.pth"), "caffe", "coco")
    with pytest.raises(VweError, match="refused"):
        load_deeplab_init(slim_for_file(), "coco", "caffe", "coco")
    with pytest.raises(VweError, match="convert.py"):
        load_deeplab_init(slim_for_file(), "coco", "caffe", "voc")


def test_bad_files_refused(tmp_path) -> None:
    state = random_kz_file(WIDTH)
    torch.save({f"base.{k}": v for k, v in state.items()}, tmp_path / "vocaug.pth")
    with pytest.raises(VweError, match="ground-truth"):
        load_deeplab_init(slim_for_file(), str(tmp_path / "vocaug.pth"), "caffe", "voc")
    torch.save(state, tmp_path / "kz.pth")
    with pytest.raises(VweError, match="layout=caffe"):
        load_deeplab_init(tiny_tv(), str(tmp_path / "kz.pth"), "torchvision", "voc")
    torch.save({"weights": state["fc.bias"], "extra": np.dtype("float32")}, tmp_path / "p.pth")
    with pytest.raises(VweError, match="plain state dict"):  # weights_only=True refuses pickles
        load_deeplab_init(slim_for_file(), str(tmp_path / "p.pth"), "caffe", "voc")
    with pytest.raises(VweError, match="not found"):
        load_deeplab_init(slim_for_file(), str(tmp_path / "none.pth"), "caffe", "voc")
    with pytest.raises(VweError, match="Google Drive"):
        load_deeplab_init(slim_for_file(), "imagenet", "caffe", "voc")


def test_builder_errors_and_normalisation() -> None:
    with pytest.raises(VweError, match="seg.layout"):
        build_deeplab(3, backbone="resnet_tiny", layout="msra")
    with pytest.raises(VweError, match="Caffe layout"):
        build_deeplab(3, backbone="resnet_tiny", layout="caffe")
    assert input_normalization("caffe") == ((104.008, 116.669, 122.675), (1.0, 1.0, 1.0), True)
    mean, std, bgr = input_normalization("torchvision")
    assert mean == pytest.approx((123.675, 116.28, 103.53)) and not bgr
    assert std == pytest.approx((58.395, 57.12, 57.375))


def test_freeze_stem_caffe() -> None:
    model = slim_caffe()
    dl._freeze_stem(model.base.backbone)
    stem = model.base.backbone.layer1
    assert not any(p.requires_grad for p in stem.parameters())
    names = {g["name"] for g in param_groups(model, 1e-3)}
    assert names == {"backbone", "aspp_weight", "aspp_bias"}
    grouped = _ids(p for g in param_groups(model, 1e-3) for p in g["params"])
    assert id(stem.conv1.conv.weight) not in grouped


def test_import_weights_deeplab_caffe_maps_key_by_key(tmp_path, capsys) -> None:
    from vwe.cli import main

    state = random_kz_file(WIDTH)
    state["fc.weight"] = torch.randn(91, 32 * WIDTH)  # the COCO init's classifier head
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "init.pth")
    dst = tmp_path / "converted.pt"
    assert main(["import-weights", "--format", "deeplab-caffe", str(tmp_path / "init.pth"),
                 str(dst)]) == 0
    model = slim_for_file()
    load_deeplab_init(model, str(dst), "caffe", "voc")
    got = model.base.backbone.state_dict()
    for key in ("layer1.conv1.conv.weight", "layer4.block17.conv3x3.conv.weight"):
        assert torch.equal(got[key], state[key]), key
    with pytest.raises(VweError, match="COCO"):  # still recognised as a COCO init
        load_deeplab_init(slim_for_file(), str(dst), "caffe", "coco2014")
    del state["layer3.block2.reduce.conv.weight"]
    torch.save(state, tmp_path / "broken.pth")
    assert main(["import-weights", "--format", "deeplab-caffe", str(tmp_path / "broken.pth"),
                 str(tmp_path / "out.pt")]) == 2
    assert "layer3.block2.reduce.conv.weight" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()
