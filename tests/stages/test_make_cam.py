"""CAM aggregation (make-cam) against an independent numpy computation on a hand-made model."""

import numpy as np
import pytest
import torch
from PIL import Image

from trained_statistics import give_trained_statistics
from vwe.config import CamConfig
from vwe.inference.cams import multiscale_cams

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class BlockMeanCams(torch.nn.Module):
    """A stand-in CAM network with CAMs one can compute by hand: per 4×4 block (stride 4),
    class c's map is ReLU(mean of channel c of the normalised input) and the word map is
    ReLU(−mean of channel c)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def cam_maps(self, images, codebook=None, with_word_cam=False):
        pooled = torch.nn.functional.avg_pool2d(images, 4, ceil_mode=True)
        img = torch.relu(pooled)
        return img, (torch.relu(-pooled) if with_word_cam else None)


def bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """align_corners=False bilinear resize written out by hand (C, h, w) → (C, H, W)."""
    c, h, w = maps.shape
    out = np.zeros((c, *size), np.float64)
    for axis_len, out_len, name in ((h, size[0], "y"), (w, size[1], "x")):
        src = (np.arange(out_len) + 0.5) * axis_len / out_len - 0.5
        src = np.clip(src, 0, None)
        lo = np.minimum(np.floor(src).astype(int), axis_len - 1)
        hi = np.minimum(lo + 1, axis_len - 1)
        frac = src - lo
        if name == "y":
            ylo, yhi, yf = lo, hi, frac
        else:
            xlo, xhi, xf = lo, hi, frac
    for i in range(size[0]):
        for j in range(size[1]):
            top = maps[:, ylo[i], xlo[j]] * (1 - xf[j]) + maps[:, ylo[i], xhi[j]] * xf[j]
            bot = maps[:, yhi[i], xlo[j]] * (1 - xf[j]) + maps[:, yhi[i], xhi[j]] * xf[j]
            out[:, i, j] = top * (1 - yf[i]) + bot * yf[i]
    return out


def block_means(x: np.ndarray) -> np.ndarray:
    """(H, W, 3) → (3, ⌈H/4⌉, ⌈W/4⌉) means over 4×4 blocks (partial blocks: their own mean)."""
    h, w = x.shape[:2]
    out = np.zeros((3, -(-h // 4), -(-w // 4)))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(-1, 3).mean(0)
    return out


def reference(image, keys, scales, fuse_word):
    h, w = image.shape[:2]
    sums = {}
    for s in scales:
        if s == 1.0:
            scaled = image
        else:
            size = (int(np.round(w * s)), int(np.round(h * s)))
            scaled = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        x = (scaled / 255.0 - MEAN) / STD
        means = block_means(x)
        means_flip = block_means(x[:, ::-1])[:, :, ::-1]
        for branch, sign in (("img", 1), ("word", -1)):
            fused = np.maximum(np.maximum(sign * means, 0), np.maximum(sign * means_flip, 0))
            for res, size in (("cam", (-(-h // 4), -(-w // 4))), ("high_res", (h, w))):
                sums[(branch, res)] = sums.get((branch, res), 0) + bilinear(fused, size)
    out = {}
    for res in ("cam", "high_res"):
        parts = {b: sums[(b, res)][keys] for b in ("img", "word")}
        parts = {b: m / (m.reshape(len(keys), -1).max(1)[:, None, None] + 1e-5)
                 for b, m in parts.items()}
        out[res] = np.maximum(parts["img"], parts["word"]) if fuse_word else parts["img"]
    return out


@pytest.mark.parametrize("fuse_word", [False, True])
def test_multiscale_flip_aggregation_by_hand(fuse_word):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (22, 29, 3), dtype=np.uint8)
    keys = np.array([0, 2])
    cfg = CamConfig(scales=[1.0, 0.5, 1.5], flip_fusion="max", fuse_word_cam=fuse_word)
    got = multiscale_cams(BlockMeanCams(), image, keys, cfg)
    want = reference(image, keys, cfg.scales, fuse_word)
    assert got["cam"].shape == (2, 6, 8) and got["high_res"].shape == (2, 22, 29)
    assert got["cam"].dtype == np.float32 and got["keys"].tolist() == [0, 2]
    np.testing.assert_allclose(got["cam"], want["cam"], atol=2e-5)
    np.testing.assert_allclose(got["high_res"], want["high_res"], atol=2e-5)
    if fuse_word:
        np.testing.assert_allclose(got["high_res"],
                                   np.maximum(got["high_res_img"], got["high_res_word"]))


def test_sum_fusion_and_irnet_crop_differ_from_defaults():
    image = np.random.default_rng(1).integers(0, 256, (21, 35, 3), dtype=np.uint8)
    keys = np.array([1])
    base = multiscale_cams(BlockMeanCams(), image, keys,
                           CamConfig(scales=[1.0], fuse_word_cam=False))
    summed = multiscale_cams(BlockMeanCams(), image, keys,
                             CamConfig(scales=[1.0], flip_fusion="sum", fuse_word_cam=False))
    cropped = multiscale_cams(BlockMeanCams(), image, keys,
                              CamConfig(scales=[1.0], high_res_resize="irnet_crop",
                                        fuse_word_cam=False))
    assert not np.allclose(base["cam"], summed["cam"])
    assert cropped["high_res"].shape == base["high_res"].shape
    assert not np.allclose(base["high_res"], cropped["high_res"])
    np.testing.assert_allclose(base["cam"], cropped["cam"])


def test_make_cam_resumes_and_shards_over_two_processes(tiny_dataset, tmp_path):
    import os
    import subprocess
    import sys

    from vwe.cli import main
    from vwe.data.io import load_npz

    args = [f"data.root={tiny_dataset}", "data.num_workers=0", "model.backbone=resnet_tiny",
            "model.pretrained=none", "model.num_words=8", "train_cam.batch_size=4",
            "train_cam.max_steps=2", "train_cam.crop_size=64", "cam.split=val",
            "cam.scales=[1.0, 0.5]"]
    trained = tmp_path / "trained"
    assert main(["train-cam", f"run_dir={trained}", *args]) == 0
    checkpoint = f"cam.checkpoint={trained}/train_cam/final.pt"
    single = tmp_path / "single"
    assert main(["make-cam", f"run_dir={single}", checkpoint, *args]) == 0
    files = sorted((single / "cams").glob("*.npz"))
    assert len(files) == 16
    first = files[0].stat().st_mtime_ns
    files[1].unlink()
    assert main(["make-cam", f"run_dir={single}", checkpoint, *args]) == 0
    assert files[0].stat().st_mtime_ns == first and files[1].exists()  # only the gap is redone

    double = tmp_path / "double"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vwe.cli", "make-cam", "device=cpu", f"run_dir={double}", checkpoint, *args]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for path in files:
        ours, theirs = load_npz(path), load_npz(double / "cams" / path.name)
        for key in ours:
            np.testing.assert_allclose(ours[key], theirs[key], atol=1e-6)


def test_cam_files_keep_the_fused_maps_and_float16_halves_them(cam_run, tiny_dataset, tmp_path,
                                                               refine_overrides):
    import zipfile

    from vwe.cli import main
    from vwe.data.io import load_npz

    names = sorted(p.stem for p in (cam_run / "cams").glob("*.npz"))[:4]
    split = tiny_dataset / "ImageSets" / "Segmentation"
    (split / "four.txt").write_text("".join(f"{n}\n" for n in names))
    sizes, arrays = {}, {}
    try:
        for label, extra in (("default", []), ("parts", ["cam.save_parts=true"]),
                             ("half", ["cam.dtype=float16"])):
            run = tmp_path / label
            (run / "train_cam").mkdir(parents=True)
            (run / "train_cam" / "final.pt").write_bytes(
                (cam_run / "train_cam" / "final.pt").read_bytes())
            assert main(["make-cam", *refine_overrides(tiny_dataset, run), "cam.split=four",
                         *extra]) == 0
            sizes[label] = sum((run / "cams" / f"{n}.npz").stat().st_size for n in names)
            arrays[label] = {n: load_npz(run / "cams" / f"{n}.npz") for n in names}
    finally:
        (split / "four.txt").unlink()
    for n in names:
        stored = load_npz(cam_run / "cams" / f"{n}.npz")
        assert sorted(arrays["default"][n]) == ["cam", "high_res", "keys"]
        assert sorted(arrays["parts"][n]) == ["cam", "cam_img", "cam_word", "high_res",
                                              "high_res_img", "high_res_word", "keys"]
        np.testing.assert_array_equal(arrays["default"][n]["high_res"], stored["high_res"])
        np.testing.assert_array_equal(arrays["parts"][n]["high_res"], stored["high_res"])
        half = arrays["half"][n]["high_res"]
        assert half.dtype == np.float16
        np.testing.assert_allclose(half.astype(np.float32), stored["high_res"], atol=5e-4)
    assert sizes["parts"] > sizes["default"] > 1.5 * sizes["half"]
    with zipfile.ZipFile(tmp_path / "default" / "cams" / f"{names[0]}.npz") as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}


def cam_net_with_statistics(fuse_word: bool = True):
    """A resnet18 CAM net in eval mode with non-trivial BN statistics, and a 3-scale CAM config
    that keeps the parts."""
    from vwe.config import load_config
    from vwe.models.cam_net import CamNet

    cfg = load_config(None, ["model.backbone=resnet18", "model.pretrained=none",
                             "model.num_words=16"])
    torch.manual_seed(0)
    model = CamNet(cfg.model, 5).eval()
    give_trained_statistics(model)
    return model, CamConfig(scales=[1.0, 0.5, 1.5], fuse_word_cam=fuse_word, save_parts=True)


def folded_cam_net(fuse_word: bool = True):
    """cam_net_with_statistics as make-cam runs it: batch norm folded into the convs."""
    from vwe.models.backbone import fold_batch_norm

    model, cam_cfg = cam_net_with_statistics(fuse_word)
    return fold_batch_norm(model), cam_cfg


@pytest.mark.parametrize("fuse_word", [False, True])
def test_inference_path_gives_the_maps_of_the_training_network(fuse_word):
    """make-cam's network (batch norm folded, docs/performance.md#make-cam) and its input path
    (scaled pairs made ahead, as in a DataLoader worker) give the plain network's CAMs."""
    from vwe.inference.cams import cams_of_pairs, scaled_pairs
    from vwe.models.backbone import fold_batch_norm

    model, cam_cfg = cam_net_with_statistics(fuse_word)
    image = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    keys = np.array([1, 3])
    want = multiscale_cams(model, image, keys, cam_cfg)
    folded = fold_batch_norm(model)  # as make-cam: NCHW on the CPU, channels_last on CUDA
    for layout in (torch.contiguous_format, torch.channels_last):
        got = cams_of_pairs(folded.to(memory_format=layout), scaled_pairs(image, cam_cfg.scales),
                            image.shape[:2], keys, cam_cfg)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5, err_msg=key)
    empty = cams_of_pairs(folded, scaled_pairs(image, [1.0]), image.shape[:2],
                          np.array([], np.int64), cam_cfg)
    assert empty["cam"].shape == (0, 12, 16) and empty["high_res"].shape == (0, 45, 61)


def test_images_of_one_size_in_one_batch_get_their_own_maps():
    from vwe.inference.cams import cams_of_images, cams_of_pairs, scaled_pairs

    model, cam_cfg = folded_cam_net()
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (41, 57, 3), dtype=np.uint8) for _ in range(3)]
    keys = [np.array([1, 3]), np.array([0]), np.array([], np.int64)]
    inputs = [(scaled_pairs(image, cam_cfg.scales), k) for image, k in zip(images, keys)]
    together = cams_of_images(model, inputs, (41, 57), cam_cfg)
    assert len(together) == 3
    for (pairs, k), got in zip(inputs, together):
        alone = cams_of_pairs(model, pairs, (41, 57), k, cam_cfg)
        assert sorted(got) == sorted(alone)
        np.testing.assert_array_equal(got["keys"], k)
        for key in alone:
            np.testing.assert_allclose(got[key], alone[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert together[2]["high_res"].shape == (0, 41, 57)
    assert not np.allclose(together[0]["cam"][:1], together[1]["cam"])  # not one image's maps


def test_groups_keep_the_order_and_split_on_size_and_limit():
    from vwe.stages.make_cam import same_size_groups

    samples = [(name, size, []) for name, size in
               [("a", (2, 3)), ("b", (2, 3)), ("c", (2, 3)), ("d", (3, 2)), ("e", (2, 3))]]
    groups = [[name for name, _, _ in group] for group in same_size_groups(samples, 2)]
    assert groups == [["a", "b"], ["c"], ["d"], ["e"]]
    assert [len(g) for g in same_size_groups(samples, 1)] == [1] * 5


def test_a_group_that_does_not_fit_is_halved_until_it_does():
    from vwe.inference.cams import cams_of_pairs, scaled_pairs
    from vwe.stages.make_cam import cams_within_memory

    model, cam_cfg = folded_cam_net(fuse_word=False)
    batches = []
    forward = model.cam_maps

    def at_most_two_images(images, **kwargs):
        batches.append(images.shape[0] // 2)
        if images.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(images, **kwargs)

    model.cam_maps = at_most_two_images
    rng = np.random.default_rng(4)
    inputs = [(scaled_pairs(rng.integers(0, 256, (33, 29, 3), dtype=np.uint8), cam_cfg.scales),
               np.array([2])) for _ in range(5)]
    got = cams_within_memory(model, inputs, (33, 29), cam_cfg, None)
    assert [b for b in batches if b <= 2] and max(batches) == 5
    for (pairs, keys), cams in zip(inputs, got):
        want = cams_of_pairs(model, pairs, (33, 29), keys, cam_cfg)
        np.testing.assert_allclose(cams["high_res"], want["high_res"], rtol=1e-5, atol=1e-6)
    model.cam_maps = lambda images, **kwargs: (_ for _ in ()).throw(torch.OutOfMemoryError())
    with pytest.raises(torch.OutOfMemoryError):
        cams_within_memory(model, inputs[:1], (33, 29), cam_cfg, None)


def test_make_cam_batches_images_of_one_size_with_the_same_files(cam_run, tiny_dataset,
                                                                  tmp_path, refine_overrides,
                                                                  monkeypatch):
    """cam.batch_images sorts a rank's images by size and runs those of one size together; the
    files are those of one image at a time, and the key is not part of the record."""
    from collections import Counter

    from vwe.cli import main
    from vwe.data.io import image_size, load_npz
    from vwe.stages import make_cam

    names = sorted(p.stem for p in (cam_run / "cams").glob("*.npz"))
    sizes = {n: image_size(tiny_dataset / "JPEGImages" / f"{n}.jpg") for n in names}
    shared = [n for n in names if Counter(sizes.values())[sizes[n]] > 1]
    assert len(shared) >= 4  # the tiny dataset has several pairs of one size
    chosen = shared + [n for n in names if n not in shared][:3]
    split = tiny_dataset / "ImageSets" / "Segmentation"
    (split / "batched.txt").write_text("".join(f"{n}\n" for n in chosen))
    batches: list[int] = []
    real = make_cam.cams_of_images

    def counting(model, inputs, *args, **kwargs):
        batches.append(len(inputs))
        return real(model, inputs, *args, **kwargs)

    monkeypatch.setattr(make_cam, "cams_of_images", counting)
    run = tmp_path / "run"
    (run / "train_cam").mkdir(parents=True)
    (run / "train_cam" / "final.pt").write_bytes((cam_run / "train_cam" / "final.pt").read_bytes())
    try:
        overrides = [*refine_overrides(tiny_dataset, run), "cam.split=batched"]
        assert main(["make-cam", *overrides, "cam.batch_images=4"]) == 0
        assert sorted(batches, reverse=True)[:2] == [2, 2] and sum(batches) == len(chosen)
        for n in chosen:
            got, want = load_npz(run / "cams" / f"{n}.npz"), load_npz(cam_run / "cams" / f"{n}.npz")
            for key in want:
                np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
        batches.clear()
        assert main(["make-cam", *overrides, "cam.batch_images=1"]) == 0
        assert batches == []  # same record: every file is current
    finally:
        (split / "batched.txt").unlink()


def test_images_outside_the_trained_long_sides_are_scaled_into_them(tiny_dataset):
    """CamInputs scales every inference scale by the image's long-side factor; inside the range
    (or with no range) the pairs are the image's own sizes."""
    from vwe.data.voc import VocLayout
    from vwe.stages.make_cam import CamInputs

    layout = VocLayout(tiny_dataset)
    name = layout.read_split("val")[0]
    height, width = Image.open(layout.image_path(name)).size[::-1]
    long_side = max(height, width)
    for long_range, factor in ((None, 1.0), ((long_side // 2, long_side // 2), 0.5),
                               ((long_side, 4 * long_side), 1.0)):
        _, size, pairs = CamInputs(layout, [name], [1.0, 2.0], long_range)[0]
        assert size == (height, width)  # the maps are made at the image's own size
        got = [tuple(pair.shape[-2:]) for pair in pairs]
        want = [(round(height * s * factor), round(width * s * factor)) for s in (1.0, 2.0)]
        assert got == want
