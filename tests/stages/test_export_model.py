"""vwe export: the ONNX file (onnxruntime) and the TorchScript file (torch.jit.load) give the
logits infer-seg computes for one image, at two input sizes and batch sizes; the sidecar; refusals
in one line."""

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

from vwe.cli import main
from vwe.config import load_config
from vwe.data.io import voc_palette
from vwe.data.segmentation import normalize_pixels
from vwe.engine.checkpoint import load_checkpoint, load_trained, save_checkpoint
from vwe.models.deeplab import PixelSegmenter, build_deeplab, input_normalization
from vwe.stages.infer_seg import predict_logits
from vwe.stages.train_seg import build_seg_model, checkpoint_extras

pytestmark = [pytest.mark.usefixtures("single_torch_thread"),
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")]

CLASS_NAMES = ["background", "disc", "square"]
SIZES = ((1, 50, 61), (2, 72, 40))  # (N, H, W): odd sizes, a second batch size


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A train-seg checkpoint as train-seg writes it (random resnet_tiny, larger ASPP weights so
    the logits are not all near 0)."""
    cfg = load_config(None, ["seg.backbone=resnet_tiny", "seg.pretrained=none"])
    torch.manual_seed(0)
    model = build_seg_model(cfg, len(CLASS_NAMES), "none")
    for conv in model.base.aspp.branches:
        torch.nn.init.normal_(conv.weight, std=0.3)
    path = tmp_path_factory.mktemp("export") / "final.pt"
    save_checkpoint(path, {"model": model.base.state_dict(), "step": 2,
                           **checkpoint_extras(cfg, CLASS_NAMES)})
    return path


def pixel_batches():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8) for n, h, w in SIZES]


def eager_logits(checkpoint, images):
    """infer-seg's path, image by image: normalise, MSC, upsample (outer scale 1, no flip)."""
    model = load_trained(checkpoint, "deeplab").model
    mean, std, bgr = input_normalization("torchvision")
    return np.stack([predict_logits(model, normalize_pixels(image, mean, std, bgr), [1.0], False)
                     .numpy() for image in images])


def as_input(images):
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32)  # (N, 3, H, W)


def test_onnx_and_torchscript_match_the_eager_model(checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx_file, script_file = tmp_path / "deeplab.onnx", tmp_path / "out" / "deeplab.pt"
    assert main(["export", str(checkpoint), "--format", "onnx", str(onnx_file)]) == 0
    assert main(["export", "--format", "torchscript", str(checkpoint), str(script_file)]) == 0
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    extra = {"vwe.json": ""}
    scripted = torch.jit.load(str(script_file), map_location="cpu", _extra_files=extra)
    for images in pixel_batches():
        expected = eager_logits(checkpoint, images)
        assert expected.shape == (len(images), 3, *images.shape[1:3])
        assert np.abs(expected).max() > 0.5  # a comparison of non-trivial logits
        (from_onnx,) = session.run(None, {"images": as_input(images)})
        with torch.no_grad():
            from_script = scripted(torch.from_numpy(as_input(images))).numpy()
        assert from_onnx.shape == from_script.shape == expected.shape
        assert np.abs(from_onnx - expected).max() <= 1e-4
        assert np.abs(from_script - expected).max() <= 1e-4
    assert json.loads(extra["vwe.json"])["format"] == "torchscript"

    sidecar = json.loads((tmp_path / "deeplab.onnx.json").read_text())
    assert sidecar["class_names"] == CLASS_NAMES and sidecar["num_classes"] == 3
    assert sidecar["input"]["shape"] == ["N", 3, "H", "W"] and sidecar["input"]["range"] == [0, 255]
    assert sidecar["input"]["normalization_in_graph"]["mean"] == [123.675, 116.28, 103.53]
    assert sidecar["output"]["shape"] == ["N", 3, "H", "W"]
    assert sidecar["palette"] == voc_palette(3).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert sidecar["network"]["msc_scales"] == [0.5, 0.75] and sidecar["opset"] == 18
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert sidecar["checkpoint"]["sha256"].removeprefix("sha256:") == digest[:32]
    assert not list(tmp_path.glob(".*tmp*")) and not list((tmp_path / "out").glob(".*tmp*"))


def test_without_msc_the_torchscript_file_is_the_single_scale_network(checkpoint, tmp_path):
    out = tmp_path / "single.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", str(out),
                 "export_model.msc=false"]) == 0
    model = load_trained(checkpoint, "deeplab", overrides={"msc_scales": []}).model
    mean, std, bgr = input_normalization("torchvision")
    image = pixel_batches()[0][0]
    expected = predict_logits(model, normalize_pixels(image, mean, std, bgr), [1.0], False)
    with torch.no_grad():
        got = torch.jit.load(str(out))(torch.from_numpy(as_input(image[None])))[0]
    assert (got - expected).abs().max() <= 1e-4
    assert json.loads((tmp_path / "single.pt.json").read_text())["network"]["msc_scales"] == []


@pytest.mark.parametrize("layout", ["caffe", "torchvision"])
def test_pixel_segmenter_normalises_as_infer_seg_does(layout):
    """The graph's input convention for both layouts (caffe: BGR, its mean, std 1): the same
    logits as infer-seg given the normalised image."""
    torch.manual_seed(0)
    model = build_deeplab(3, backbone="resnet_tiny", layout="torchvision").eval()
    image = pixel_batches()[0][0]
    mean, std, bgr = input_normalization(layout)
    expected = predict_logits(model, normalize_pixels(image, mean, std, bgr), [1.0], False)
    with torch.no_grad():
        got = PixelSegmenter(model, layout)(torch.from_numpy(as_input(image[None])))[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_refusals_are_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "m.onnx")
    err = one_line_error(capsys, ["export", str(tmp_path / "absent.pt"), "--format", "onnx", out])
    assert "absent.pt not found" in err
    state = load_checkpoint(checkpoint)
    for name, title in (("cam_net", "CAM network"), ("irnet", "IRNet")):
        save_checkpoint(tmp_path / f"{name}.pt", {**state, "arch": {**state["arch"],
                                                                   "name": name}})
        err = one_line_error(capsys, ["export", str(tmp_path / f"{name}.pt"), "--format", "onnx",
                                      out])
        assert f"is a {title}" in err and "only DeepLab (train-seg) checkpoints export" in err
    save_checkpoint(tmp_path / "bare.pt", state["model"])  # a plain state dict, no 'arch'
    assert "records no network" in one_line_error(
        capsys, ["export", str(tmp_path / "bare.pt"), "--format", "torchscript", out])
    err = one_line_error(capsys, ["export", str(checkpoint), "--format", "tflite", out])
    assert "export_model.format='tflite' must be one of onnx, torchscript" in err
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    err = one_line_error(capsys, ["export", str(checkpoint), "--format", "onnx",
                                  str(blocker / "m.onnx")])
    assert "cannot write to output folder" in err and "OUT" in err
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    err = one_line_error(capsys, ["export", str(checkpoint), "--format", "onnx", out])
    assert "pip install onnx onnxscript" in err
    assert not list(tmp_path.glob("m.onnx*"))


def test_export_never_writes_over_its_checkpoint_or_a_file_it_did_not_make(checkpoint, tmp_path,
                                                                           capsys):
    copy = tmp_path / "final.pt"
    copy.write_bytes(checkpoint.read_bytes())
    before = copy.read_bytes()
    err = one_line_error(capsys, ["export", str(copy), "--format", "torchscript", str(copy)])
    assert "OUT would write" in err and "CHECKPOINT" in err and "choose another OUT" in err
    linked = tmp_path / "linked.pt"
    linked.hardlink_to(copy)  # another name, the same file
    err = one_line_error(capsys, ["export", str(copy), "--format", "onnx", str(linked)])
    assert "CHECKPOINT" in err
    notes = tmp_path / "notes.onnx"
    notes.write_text("a user's file")
    err = one_line_error(capsys, ["export", str(copy), "--format", "onnx", str(notes)])
    assert "was not written by vwe export" in err and "notes.onnx.json" in err
    assert copy.read_bytes() == before and notes.read_text() == "a user's file"
    out = tmp_path / "model.pt"  # an earlier export (sidecar beside it) may be written again
    assert main(["export", str(copy), "--format", "torchscript", str(out)]) == 0
    assert main(["export", str(copy), "--format", "torchscript", str(out)]) == 0
