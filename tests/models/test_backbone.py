"""Backbone: frozen batch norm, output sizes, torchvision compatibility, weight loading."""

from __future__ import annotations

import pytest
import torch
import torchvision

from vwe.errors import VweError
from vwe.models.backbone import FixedBatchNorm2d, build_backbone, load_pretrained


def test_fixed_batchnorm_uses_running_stats_in_train_mode() -> None:
    bn = FixedBatchNorm2d(2)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25]))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0]))
    bn.train()
    x = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1).expand(3, 2, 2, 2).clone()
    out = bn(x)
    # (3 - 1)/sqrt(4 + 1e-5)*2 + 0.5 and (-1 + 2)/sqrt(0.25 + 1e-5)
    expected = torch.tensor([2.0 / (4 + 1e-5) ** 0.5 * 2 + 0.5, 1.0 / (0.25 + 1e-5) ** 0.5])
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-6)
    assert torch.equal(bn.running_mean, torch.tensor([1.0, -2.0]))
    assert torch.equal(bn.running_var, torch.tensor([4.0, 0.25]))
    assert int(bn.num_batches_tracked) == 0
    out.sum().backward()
    assert bn.weight.grad is not None and bn.bias.grad is not None
    bn.eval()
    assert torch.equal(bn(x), out.detach())


@pytest.mark.parametrize(("height", "width", "expected"),
                         [(97, 100, (7, 7)), (129, 64, (9, 4)), (1, 17, (1, 2))])
def test_cam_strides_round_up(height: int, width: int, expected: tuple[int, int]) -> None:
    net = build_backbone("resnet_tiny")
    outs = net(torch.randn(1, 3, height, width))
    assert len(outs) == 5
    assert tuple(outs[-1].shape[-2:]) == expected  # ⌈H/16⌉, ⌈W/16⌉
    assert tuple(outs[0].shape[-2:]) == (-(-height // 4), -(-width // 4))
    assert [o.shape[1] for o in outs] == net.out_channels


def test_deeplab_strides_and_dilations() -> None:
    net = build_backbone("resnet_tiny", strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
    outs = net(torch.randn(1, 3, 65, 40))
    assert [tuple(o.shape[-2:]) for o in outs] == [(17, 10), (17, 10), (9, 5), (9, 5), (9, 5)]
    assert net.layer4[0].conv1.dilation == (4, 4) and net.layer4[0].conv1.padding == (4, 4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_state_dict_loads_and_matches(name: str) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours = build_backbone(name, strides=(1, 2, 2, 2))  # torchvision's strides
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 45, 38)
    with torch.no_grad():
        outs = ours.train()(x)  # the training flag must not matter
        ref = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for i, layer in enumerate([None, reference.layer1, reference.layer2, reference.layer3,
                                   reference.layer4]):
            ref = ref if layer is None else layer(ref)
            assert torch.allclose(outs[i], ref, rtol=1e-4, atol=1e-5), i


def test_load_local_file_strips_prefix_and_fc(tmp_path) -> None:
    source = build_backbone("resnet_tiny")
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(3, 128)
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": state}, path)
    target = build_backbone("resnet_tiny", pretrained=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_load_local_file_key_errors_name_the_file(tmp_path) -> None:
    state = build_backbone("resnet_tiny").state_dict()
    del state["layer4.0.conv2.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(VweError, match="broken.pth.*layer4.0.conv2.weight.*extra.weight"):
        build_backbone("resnet_tiny", pretrained=str(path))
    with pytest.raises(VweError, match="not found"):
        build_backbone("resnet_tiny", pretrained=str(tmp_path / "absent.pth"))


def test_imagenet_errors(monkeypatch) -> None:
    with pytest.raises(VweError, match="no ImageNet weights"):
        build_backbone("resnet_tiny", pretrained="imagenet")

    def offline(*args, **kwargs):
        raise OSError("no network")

    weights = torchvision.models.get_model_weights("resnet18").IMAGENET1K_V1
    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    net = build_backbone("resnet18")
    with pytest.raises(VweError, match="model.pretrained=/path/to/resnet18"):
        load_pretrained(net, "resnet18", "imagenet")


def test_unknown_backbone() -> None:
    with pytest.raises(VweError, match="resnet_tiny"):
        build_backbone("vgg16")


def _random_statistics(net: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, as a trained network has."""
    torch.manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("name", ["resnet_tiny", "resnet18", "resnet50"])
def test_folded_batch_norm_gives_the_same_outputs(name: str) -> None:
    from vwe.models.backbone import FoldedConv2d, fold_batch_norm

    torch.manual_seed(0)
    net = build_backbone(name)
    _random_statistics(net)
    x = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        want = net.eval()(x)
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(isinstance(m, FoldedConv2d) for m in folded.modules()
               if isinstance(m, torch.nn.Conv2d))
    assert not any(p.requires_grad for p in folded.parameters())
    with torch.no_grad():
        got = folded(x)
    for g, w in zip(got, want):
        # float rounding only: 1e-5 of the layer's largest activation
        assert (g - w).abs().max() <= 1e-5 * w.abs().max()
    with pytest.raises(ValueError, match="eval"):
        fold_batch_norm(build_backbone("resnet_tiny").train())


def _conv_kernels(fn) -> set[str]:
    """Names of the aten convolution kernels `fn` runs."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return {e.key for e in prof.key_averages() if "conv" in e.key}


@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (1, 2)])
def test_folded_conv_runs_onednn_on_one_thread(kernel: int, stride: int) -> None:
    """One thread, batch 2: a plain 1×1 conv goes to im2col + BLAS, the folded conv to oneDNN
    (docs/performance.md#make-cam), with the same values as the float64 conv."""
    from vwe.models.backbone import FoldedConv2d

    torch.manual_seed(0)
    conv = FoldedConv2d(64, 48, kernel, stride=stride, padding=kernel // 2).requires_grad_(False)
    x = torch.randn(2, 64, 19, 23).relu()
    want = torch.nn.functional.conv2d(x.double(), conv.weight.double(), conv.bias.double(),
                                      stride, kernel // 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            kernels = _conv_kernels(lambda: conv(x))
            plain = _conv_kernels(lambda: torch.nn.functional.conv2d(x, conv.weight, conv.bias))
            got = conv(x)
            last = conv(x.contiguous(memory_format=torch.channels_last))
    finally:
        torch.set_num_threads(threads)
    assert "aten::mkldnn_convolution" in kernels and "aten::_slow_conv2d_forward" not in kernels
    if kernel == 1 and stride == 1:  # what the folded conv is for
        assert "aten::_slow_conv2d_forward" in plain
    for out in (got, last):
        assert out.shape == want.shape and out.dtype == torch.float32
        assert (out.double() - want).abs().max() <= 1e-5 * want.abs().max()


def test_folded_conv_is_an_ordinary_conv_under_autocast_and_in_float64() -> None:
    from vwe.models.backbone import FoldedConv2d

    conv = FoldedConv2d(8, 4, 1).requires_grad_(False)
    x = torch.randn(1, 8, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a direct oneDNN call would give fp32
        assert conv(x).dtype == torch.bfloat16
    double = conv.double()
    assert double(x.double()).dtype == torch.float64
    torch.testing.assert_close(double(x.double()), torch.nn.functional.conv2d(
        x.double(), double.weight, double.bias))


def _out_of_place(net, x: torch.Tensor) -> torch.Tensor:
    """The trunk written out with fresh tensors for every add and ReLU (the second path)."""
    from vwe.models.backbone import Bottleneck

    x = net.maxpool(torch.relu(net.bn1(net.conv1(x))))
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for b in layer:
            identity = x if b.downsample is None else b.downsample(x)
            out = torch.relu(b.bn1(b.conv1(x)))
            out = b.bn2(b.conv2(out))
            if isinstance(b, Bottleneck):
                out = b.bn3(b.conv3(torch.relu(out)))
            x = torch.relu(out + identity)
    return x


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_in_place_residuals_keep_the_gradients(name: str) -> None:
    """The residual add and ReLU work in place; autograd must still give the gradients of the
    out-of-place graph."""
    torch.manual_seed(0)
    net = build_backbone(name)
    _random_statistics(net)
    x = torch.randn(2, 3, 40, 36)
    weight = torch.randn(net.out_channels[-1], 5)
    grads, losses = [], []
    for forward in (lambda: net(x)[-1], lambda: _out_of_place(net, x)):
        net.zero_grad(set_to_none=True)
        loss = (forward().mean(dim=(2, 3)) @ weight).square().sum()
        loss.backward()
        losses.append(loss.detach())
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    assert torch.equal(losses[0], losses[1])
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], rtol=0, atol=0, msg=key)
