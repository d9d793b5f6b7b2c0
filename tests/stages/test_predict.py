"""vwe predict: masks of new images from a DeepLab or CAM checkpoint alone, equal to the
pipeline's own predictions; overlays with a legend; probabilities; resume; bad inputs."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from seg_helpers import seg_overrides

from vwe.cli import main
from vwe.data.io import load_npz, read_image, read_label_png
from vwe.data.voc import VocLayout
from vwe.engine.checkpoint import load_checkpoint, load_trained, save_checkpoint
from vwe.models.deeplab import input_normalization
from vwe.visualize import LEGEND_WIDTH

pytestmark = pytest.mark.usefixtures("single_torch_thread")




@pytest.fixture(scope="module")
def seg_run(tiny_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seg_run")
    assert main(["train-seg", *seg_overrides(tiny_dataset, run_dir)]) == 0
    return run_dir


@pytest.fixture()
def new_images(tiny_dataset, tmp_path):
    """Four val images outside the dataset: two JPEGs, one PNG, one RGBA PNG."""
    layout = VocLayout(tiny_dataset)
    folder = tmp_path / "new"
    folder.mkdir()
    names = layout.read_split("val")[:4]
    for i, name in enumerate(names):
        source = layout.image_path(name)
        if i < 2:
            shutil.copy(source, folder / f"{name}.jpg")
        else:
            mode = "RGB" if i == 2 else "RGBA"
            Image.open(source).convert(mode).save(folder / f"{name}.png")
    return folder, names


def eager_mask(checkpoint, image):
    """The DeepLab's argmax by hand: normalise, one forward, upsample."""
    model = load_trained(checkpoint, "deeplab").model
    mean, std, bgr = input_normalization(model_layout(checkpoint))
    pixels = image[..., ::-1] if bgr else image
    x = (pixels.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
        logits = F.interpolate(logits, size=image.shape[:2], mode="bilinear",
                               align_corners=False)
    return logits[0].argmax(0).numpy()


def model_layout(checkpoint):
    return load_checkpoint(checkpoint)["arch"]["kwargs"]["layout"]


def test_deeplab_masks_equal_the_hand_computed_prediction(seg_run, new_images, tmp_path):
    folder, names = new_images
    checkpoint = seg_run / "train_seg" / "final.pt"
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(folder), "--out", str(out),
                 "predict.probs=true"]) == 0
    classes = load_checkpoint(checkpoint)["class_names"]
    for path in sorted(folder.iterdir()):
        image = read_image(path)
        mask_png = Image.open(out / "masks" / f"{path.stem}.png")
        assert mask_png.mode == "P" and mask_png.size == (image.shape[1], image.shape[0])
        mask = read_label_png(out / "masks" / f"{path.stem}.png")
        np.testing.assert_array_equal(mask, eager_mask(checkpoint, image))
        probs = load_npz(out / "probs" / f"{path.stem}.npz")
        assert probs["probs"].shape == (len(classes), *image.shape[:2])
        np.testing.assert_allclose(probs["probs"].sum(0), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probs["probs"].argmax(0), mask)
        assert probs["class_names"].tolist() == classes
        overlay = np.asarray(Image.open(out / "overlays" / f"{path.stem}.png"))
        assert overlay.shape[1] == image.shape[1] + LEGEND_WIDTH
        background = mask == 0
        np.testing.assert_array_equal(overlay[: image.shape[0], : image.shape[1]][background],
                                      image[background])
    saved = yaml.safe_load((out / "configs" / "predict.yaml").read_text())
    assert saved["predict"]["checkpoint"] == str(checkpoint) and saved["run_dir"] == str(out)


def test_batched_and_single_image_predictions_agree(seg_run, tiny_dataset, tmp_path):
    layout = VocLayout(tiny_dataset)
    folder = tmp_path / "same_size"
    folder.mkdir()
    for name in layout.read_split("val")[:5]:  # one size, so they share a forward
        Image.open(layout.image_path(name)).resize((72, 56)).save(folder / f"{name}.png")
    checkpoint = str(seg_run / "train_seg" / "final.pt")
    one, four = tmp_path / "one", tmp_path / "four"
    args = ["predict.overlay=false", "predict.scales=[1.0,0.75]", "predict.flip=true"]
    assert main(["predict", checkpoint, str(folder), "--out", str(one), *args]) == 0
    assert main(["predict", checkpoint, f"{folder}/*.png", "--out", str(four), *args,
                 "predict.batch_size=4"]) == 0
    for path in folder.iterdir():
        np.testing.assert_array_equal(read_label_png(one / "masks" / f"{path.stem}.png"),
                                      read_label_png(four / "masks" / f"{path.stem}.png"))
    assert not (one / "overlays").exists()


def test_predict_resumes_redoes_changed_inputs_and_refuses_other_settings(
        seg_run, new_images, tmp_path, capsys):
    folder, _ = new_images
    checkpoint = str(seg_run / "train_seg" / "final.pt")
    out = tmp_path / "out"
    assert main(["predict", checkpoint, str(folder), "--out", str(out)]) == 0
    masks = sorted((out / "masks").glob("*.png"))
    stamps = {p.name: p.stat().st_mtime_ns for p in masks}
    changed = sorted(folder.iterdir())[0]
    Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        changed, format="JPEG" if changed.suffix == ".jpg" else "PNG")
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert main(["predict", checkpoint, str(folder), "--out", str(out)]) == 0
    again = {p.name: p.stat().st_mtime_ns for p in sorted((out / "masks").glob("*.png"))}
    assert again.pop(f"{changed.stem}.png") != stamps.pop(f"{changed.stem}.png")
    assert again == stamps  # the others were kept
    np.testing.assert_array_equal(read_label_png(out / "masks" / f"{changed.stem}.png"),
                                  eager_mask(checkpoint, read_image(changed)))
    capsys.readouterr()
    assert main(["predict", checkpoint, str(folder), "--out", str(out),
                 "predict.flip=true"]) == 2
    err = capsys.readouterr().err
    assert "predict.flip: false → true" in err and "--overwrite" in err and err.count("\n") == 1
    assert main(["predict", "--overwrite", checkpoint, str(folder), "--out", str(out),
                 "predict.flip=true"]) == 0


def tagged_copies(layout, names, tmp_path):
    """The named images copied to a folder, and a tags file of their true classes."""
    labels = layout.labels_for(names)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in names:
        shutil.copy(layout.image_path(name), folder / f"{name}.jpg")
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps({n: [layout.class_names[i] for i in np.flatnonzero(labels[n])]
                                for n in names}))
    return folder, tags


def test_cam_checkpoint_masks_equal_the_stored_cams_at_the_background_score(
        cam_run, tiny_dataset, tmp_path):
    layout = VocLayout(tiny_dataset)
    names = layout.read_split("train_aug")[:3]
    folder, tags = tagged_copies(layout, names, tmp_path)
    out = tmp_path / "out"
    # the CAM run's make-cam used cam.scales=[1.0, 0.5] and the default fusion settings
    assert main(["predict", str(cam_run / "train_cam" / "final.pt"), str(folder), "--out",
                 str(out), "device=cpu", "predict.scales=[1.0,0.5]", f"predict.tags={tags}",
                 "predict.bkg_score=0.2", "predict.probs=true"]) == 0
    for name in names:
        stored = load_npz(cam_run / "cams" / f"{name}.npz")
        planes = np.concatenate([np.full((1, *stored["high_res"].shape[1:]), 0.2, np.float32),
                                 stored["high_res"]])
        expected = np.concatenate([[0], stored["keys"] + 1])[planes.argmax(0)]
        np.testing.assert_array_equal(read_label_png(out / "masks" / f"{name}.png"), expected)
        saved = load_npz(out / "probs" / f"{name}.npz")
        np.testing.assert_allclose(saved["cams"], stored["high_res"], atol=1e-6)
    untagged = tmp_path / "untagged"
    assert main(["predict", str(cam_run / "train_cam" / "final.pt"), str(folder), "--out",
                 str(untagged), "device=cpu"]) == 0  # the classifier chooses the classes
    for name in names:
        assert read_label_png(untagged / "masks" / f"{name}.png").max() <= len(layout.class_names)


def test_cam_masks_at_an_auto_score_use_otsu_over_all_inputs_cams(cam_run, tiny_dataset,
                                                                   tmp_path):
    layout = VocLayout(tiny_dataset)
    names = layout.read_split("train_aug")[:4]
    folder, tags = tagged_copies(layout, names, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(cam_run / "train_cam" / "final.pt"), str(folder), "--out", str(out),
            "device=cpu", "predict.scales=[1.0,0.5]", f"predict.tags={tags}",
            "predict.bkg_score=auto"]
    assert main(args) == 0
    stored = {name: load_npz(cam_run / "cams" / f"{name}.npz") for name in names}
    # Otsu by hand over the four images' highest CAM score per pixel, on score^0.7
    scores = np.concatenate([np.clip(a["high_res"].max(0), 0, 1).ravel()
                             for a in stored.values()])
    counts = np.histogram(scores, bins=200, range=(0, 1))[0].astype(np.float64)
    centres = ((np.arange(200) + 0.5) / 200) ** 0.7
    between = [counts[:t].sum() * counts[t:].sum() / counts.sum() ** 2
               * ((counts[:t] @ centres[:t]) / max(counts[:t].sum(), 1)
                  - (counts[t:] @ centres[t:]) / max(counts[t:].sum(), 1)) ** 2
               for t in range(1, 200)]
    score = (int(np.argmax(between)) + 1) / 200
    chosen = json.loads((out / "auto.json").read_text())
    assert chosen["bkg_score"] == pytest.approx(score, abs=1e-9)
    assert chosen["images"] == 4 and 0.05 < score < 0.95
    for name, arrays in stored.items():
        planes = np.concatenate([np.full((1, *arrays["high_res"].shape[1:]), score,
                                         np.float32), arrays["high_res"]])
        expected = np.concatenate([[0], arrays["keys"] + 1])[planes.argmax(0)]
        mask = read_label_png(out / "masks" / f"{name}.png")
        assert (mask == expected).mean() > 0.999  # float32 CAMs recomputed: ties may differ
    (out / "masks" / f"{names[0]}.png").unlink()
    (out / "auto.json").unlink()
    assert main(args) == 0  # resumed from the kept CAMs: the same score and masks
    assert json.loads((out / "auto.json").read_text()) == chosen
    assert (out / "masks" / f"{names[0]}.png").is_file()


def test_bad_inputs_are_one_line_and_write_nothing(seg_run, new_images, tmp_path, capsys):
    folder, names = new_images
    checkpoint = seg_run / "train_seg" / "final.pt"
    out = tmp_path / "out"
    state = load_checkpoint(checkpoint)
    state["arch"]["name"] = "irnet"
    save_checkpoint(tmp_path / "irn.pt", state)
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(next(folder.glob("*.jpg")), twin / f"{next(folder.glob('*.jpg')).stem}.png")
    cases = [
        ([str(tmp_path / "irn.pt"), str(folder)], "predicts boundaries, not masks"),
        ([str(checkpoint), str(tmp_path / "nothing.jpg")], "nothing.jpg not found"),
        ([str(checkpoint), str(folder / "*.tif")], "matches no image file"),
        ([str(checkpoint), str(folder), str(twin)], "masks would collide"),
        ([str(tmp_path / "absent.pt"), str(folder)], "absent.pt not found"),
        ([str(checkpoint), str(tmp_path / "own" / "masks")], "is the input image"),
    ]
    own = tmp_path / "own" / "masks"  # a folder of PNG images that --out's masks would replace
    own.mkdir(parents=True)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(own / "photo.png")
    for args, message in cases:
        target = tmp_path / "own" if "own" in args[-1] else out
        assert main(["predict", *args, "--out", str(target)]) == 2, message
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (out / "masks").exists() or not list((out / "masks").glob("*.png"))
    assert np.asarray(Image.open(own / "photo.png")).shape == (9, 9, 3)  # untouched


def test_images_smaller_than_the_stride_get_masks_of_their_size(seg_run, tmp_path):
    """A 1-pixel file and a 3x7 thumbnail: enlarged for the network, masks at their own size."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, size in (("dot", (1, 1)), ("thumb", (3, 7))):
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    assert main(["predict", str(seg_run / "train_seg" / "final.pt"), str(folder),
                 "--out", str(out)]) == 0
    assert read_label_png(out / "masks" / "dot.png").shape == (1, 1)
    assert read_label_png(out / "masks" / "thumb.png").shape == (3, 7)


def test_a_photo_larger_than_training_is_seen_at_the_trained_scale(seg_run, new_images,
                                                                   tmp_path):
    """DeepLab trained on long sides [lo, hi] (its checkpoint says): a photo 5x larger is
    predicted at hi / long side and its mask resized back; trained_scale=false predicts at full
    size (docs/pipeline.md#trained-scale)."""
    from vwe.data.segmentation import normalize_pixels
    from vwe.inference.segmentation import predict_logits_batch

    checkpoint = seg_run / "train_seg" / "final.pt"
    low, high = load_checkpoint(checkpoint)["trained_long_side"]
    folder, _ = new_images
    small = read_image(sorted(folder.glob("*.jpg"))[0])
    big = np.asarray(Image.fromarray(small).resize((small.shape[1] * 5, small.shape[0] * 5)))
    assert max(big.shape[:2]) > high >= low
    (tmp_path / "big").mkdir()
    Image.fromarray(big).save(tmp_path / "big" / "big.png")
    model = load_trained(checkpoint, "deeplab").model
    mean, std, bgr = input_normalization(model_layout(checkpoint))
    pixels = normalize_pixels(big, mean, std, bgr)[None]
    for trained_scale, scale in ((True, high / max(big.shape[:2])), (False, 1.0)):
        out = tmp_path / f"out{trained_scale}"
        assert main(["predict", str(checkpoint), str(tmp_path / "big"), "--out", str(out),
                     f"predict.trained_scale={str(trained_scale).lower()}"]) == 0
        expected = predict_logits_batch(model, pixels, [scale], False)[0].argmax(0).numpy()
        np.testing.assert_array_equal(read_label_png(out / "masks" / "big.png"), expected)
