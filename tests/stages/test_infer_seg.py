"""infer-seg: the dense CRF sharpens a blurred prediction; MS + flip fusion equals a hand-built
reference; PNGs per image (resumable, CRF workers = in-process); checkpoint mismatches fail."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from seg_helpers import seg_overrides

from vwe.cli import main
from vwe.config import CrfConfig
from vwe.data.io import read_image, voc_palette
from vwe.data.voc import VocLayout
from vwe.engine.checkpoint import load_checkpoint, save_checkpoint
from vwe.inference.segmentation import crf_image, crf_kwargs, predict_logits
from vwe.models.deeplab import build_deeplab
from vwe.refine.crf import crf_inference_prob

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def mean_iou(gt, pred, num_classes):
    """Plain loops: IoU of every class present in gt, averaged."""
    ious = []
    for c in range(num_classes):
        g, p = gt == c, pred == c
        if g.any():
            ious.append((g & p).sum() / (g | p).sum())
    return float(np.mean(ious))


def blurred_probs(gt, num_classes, stride=8):
    """A DeepLab-like prediction: the one-hot GT averaged at stride 8, upsampled bilinearly."""
    onehot = torch.from_numpy(np.eye(num_classes, dtype=np.float32)[gt].transpose(2, 0, 1))
    small = F.avg_pool2d(onehot[None], stride, ceil_mode=True)
    up = F.interpolate(small, size=gt.shape, mode="bilinear", align_corners=False)[0]
    return torch.softmax(torch.log(up.clamp(min=1e-3)), 0).numpy()


def test_crf_sharpens_a_blurred_prediction_of_synthetic_images(tiny_dataset):
    layout = VocLayout(tiny_dataset)
    crf = CrfConfig()  # docs/segmentation.md#dense-crf defaults
    for name in layout.read_split("val")[:3]:
        gt = layout.read_mask(name).astype(np.int64)
        gt[gt == 255] = 0
        image = read_image(layout.image_path(name))
        probs = blurred_probs(gt, 9)
        refined = crf_inference_prob(crf_image(image, crf.image), probs, **crf_kwargs(crf))
        before = mean_iou(gt, probs.argmax(0), 9)
        after = mean_iou(gt, refined.argmax(0), 9)
        assert after > before + 0.02, (name, before, after)


def test_kz_quirk_image_wraps_negative_values():
    image = np.array([[[0, 117, 200]]], np.uint8)  # BGR 200,117,0 − (104.008,116.669,122.675)
    np.testing.assert_array_equal(crf_image(image, "kz_quirk"), [[[95, 0, 134]]])
    assert crf_image(image, "raw").tolist() == image.tolist()


def test_multiscale_flip_fusion_matches_a_hand_built_reference():
    torch.manual_seed(0)
    model = build_deeplab(3, backbone="resnet_tiny", layout="torchvision").eval()
    pixels = np.random.default_rng(0).normal(size=(37, 45, 3)).astype(np.float32)
    x = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]

    def full(logits):
        return F.interpolate(logits, size=(37, 45), mode="bilinear", align_corners=False)[0]

    with torch.no_grad():
        plain = full(model(x))
        small = F.interpolate(x, size=(round(37 * 0.5), round(45 * 0.5)), mode="bilinear",
                              align_corners=False)
        small_flip = full(model(small)) + full(model(small.flip(-1))).flip(-1)
        big_flip = plain + full(model(x.flip(-1))).flip(-1)
    torch.testing.assert_close(predict_logits(model, pixels, [1.0], False), plain)
    got = predict_logits(model, pixels, [1.0, 0.5], True, "sum", "max")
    torch.testing.assert_close(got, torch.maximum(big_flip, small_flip), atol=1e-5, rtol=1e-5)
    got = predict_logits(model, pixels, [1.0, 0.5], True, "sum", "mean")
    torch.testing.assert_close(got, (big_flip + small_flip) / 2, atol=1e-5, rtol=1e-5)




@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seg_run")
    assert main(["train-seg", *seg_overrides(tiny_dataset, run_dir)]) == 0
    return run_dir


def test_infer_writes_palette_pngs_resumes_and_workers_agree(tiny_dataset, trained, tmp_path,
                                                            capsys):
    layout = VocLayout(tiny_dataset)
    names = layout.read_split("val")
    inline, pooled = tmp_path / "inline", tmp_path / "pooled"
    args = [*seg_overrides(tiny_dataset, trained), "infer_seg.split=val",
            "infer_seg.scales=[1.0, 0.75]", "infer_seg.flip=true"]
    assert main(["infer-seg", *args, f"infer_seg.out_dir={inline}",
                 "infer_seg.crf.workers=0"]) == 0
    for kind in ("raw", "crf"):
        assert sorted(p.stem for p in (inline / kind).glob("*.png")) == sorted(names)
    for name in names[:3]:
        png = Image.open(inline / "crf" / f"{name}.png")
        assert png.mode == "P" and png.size == Image.open(layout.image_path(name)).size
        assert np.array(png.getpalette()[:9]).tolist() == voc_palette(3).reshape(-1).tolist()
    first = (inline / "raw" / f"{names[0]}.png")
    stamp = first.stat().st_mtime_ns
    (inline / "crf" / f"{names[1]}.png").unlink()  # as if interrupted before its CRF finished
    assert main(["infer-seg", *args, f"infer_seg.out_dir={inline}",
                 "infer_seg.crf.workers=0"]) == 0
    assert first.stat().st_mtime_ns == stamp and (inline / "crf" / f"{names[1]}.png").exists()
    assert main(["infer-seg", *args, f"infer_seg.out_dir={inline}", "infer_seg.flip=false",
                 "infer_seg.crf.workers=0"]) == 2  # other settings: refused, not mixed in
    err = capsys.readouterr().err.splitlines()[-1]
    assert "made with other settings (infer_seg.flip: true → false)" in err and "--overwrite" in err
    assert main(["infer-seg", *args, f"infer_seg.out_dir={inline}", "infer_seg.crf.bi_w=10",
                 "infer_seg.crf.workers=0"]) == 2  # a CRF setting: the crf/ PNGs would differ
    assert "infer_seg.crf.bi_w: 4.0 → 10.0" in capsys.readouterr().err.splitlines()[-1]
    assert main(["infer-seg", "--overwrite", *args, f"infer_seg.out_dir={inline}",
                 "infer_seg.crf.bi_w=10", "infer_seg.crf.bi_rgb_std=50",
                 "infer_seg.crf.workers=0"]) == 0
    assert sorted(p.stem for p in (inline / "crf").glob("*.png")) == sorted(names)
    assert first.stat().st_mtime_ns != stamp  # every PNG recomputed, none kept
    assert main(["infer-seg", "--overwrite", *args, f"infer_seg.out_dir={inline}",
                 "infer_seg.crf.workers=0"]) == 0  # back to the first settings
    assert main(["infer-seg", *args, f"infer_seg.out_dir={pooled}",
                 "infer_seg.crf.workers=2"]) == 0
    for kind in ("raw", "crf"):
        for name in names:
            assert np.array_equal(np.asarray(Image.open(inline / kind / f"{name}.png")),
                                  np.asarray(Image.open(pooled / kind / f"{name}.png"))), name


def test_mismatched_checkpoints_fail_in_one_line(tiny_dataset, trained, tmp_path, capsys):
    base = [*seg_overrides(tiny_dataset, trained), f"infer_seg.out_dir={tmp_path / 'out'}",
            "infer_seg.crf.enabled=false"]
    assert main(["infer-seg", *base, "seg.backbone=resnet18"]) == 2
    err = capsys.readouterr().err
    assert "seg.backbone=resnet_tiny" in err and err.count("\n") == 1
    state = load_checkpoint(trained / "train_seg" / "final.pt")
    state["num_classes"] = 5
    save_checkpoint(tmp_path / "five.pt", state)
    assert main(["infer-seg", *base, f"infer_seg.checkpoint={tmp_path / 'five.pt'}"]) == 2
    assert "trained for 5 classes" in capsys.readouterr().err
    state = load_checkpoint(trained / "train_seg" / "final.pt")
    state["model"].pop("aspp.branches.0.bias")
    save_checkpoint(tmp_path / "broken.pt", state)
    assert main(["infer-seg", *base, f"infer_seg.checkpoint={tmp_path / 'broken.pt'}"]) == 2
    err = capsys.readouterr().err
    assert "does not fit this model's architecture" in err and "aspp.branches.0.bias" in err
    assert main(["infer-seg", *base, f"infer_seg.checkpoint={tmp_path / 'absent.pt'}"]) == 2
    assert "absent.pt not found" in capsys.readouterr().err
    state = load_checkpoint(trained / "train_seg" / "final.pt")
    state["arch"]["name"] = "cam_net"  # as if a CAM network's checkpoint were passed
    save_checkpoint(tmp_path / "cam.pt", state)
    assert main(["infer-seg", *base, f"infer_seg.checkpoint={tmp_path / 'cam.pt'}"]) == 2
    assert "is a CAM network (train-cam) checkpoint, not a DeepLab network (train-seg) one" \
        in capsys.readouterr().err
    state.pop("arch")
    save_checkpoint(tmp_path / "bare.pt", state)
    assert main(["infer-seg", *base, f"infer_seg.checkpoint={tmp_path / 'bare.pt'}"]) == 2
    assert "records no network" in capsys.readouterr().err
    assert not list((tmp_path / "out" / "raw").glob("*.png"))


def test_unwritable_output_folder(tiny_dataset, trained, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["infer-seg", *seg_overrides(tiny_dataset, trained),
                 f"infer_seg.out_dir={blocker / 'seg'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to output folder" in err and "infer_seg.out_dir" in err
    assert err.count("\n") == 1
