"""Bad input: one line naming the file or key and the fix, exit code 2, nothing half-written."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vwe.cli import main
from vwe.data.io import save_label_png


def tiny_args(root, run_dir):
    return [f"data.root={root}", f"run_dir={run_dir}", "data.num_workers=0",
            "model.backbone=resnet_tiny", "model.pretrained=none", "model.num_words=8",
            "train_cam.batch_size=4", "train_cam.max_steps=2", "train_cam.crop_size=64",
            "cam.split=val", "cam.scales=[1.0]", "eval_cam.split=val"]


@pytest.fixture()
def dataset(tiny_dataset, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    return root


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained")
    assert main(["train-cam", *tiny_args(tiny_dataset, run_dir)]) == 0
    return run_dir


def expect_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


def no_temp_files(folder):
    return not [p for p in folder.rglob("*") if ".tmp" in p.name or p.name.startswith(".")]


def first_val(root):
    return (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]


def test_missing_dataset_folder(tmp_path, capsys):
    assert main(["train-cam", *tiny_args(tmp_path / "nowhere", tmp_path / "run")]) == 2
    expect_one_line_error(capsys, tmp_path / "nowhere", "make-dataset")


def test_missing_list_file(dataset, trained, tmp_path, capsys):
    args = tiny_args(dataset, tmp_path / "run")
    args += ["cam.split=trainval", f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, "trainval.txt")


def test_list_entry_without_image(dataset, trained, tmp_path, capsys):
    name = first_val(dataset)
    (dataset / "JPEGImages" / f"{name}.jpg").unlink()
    run_dir = tmp_path / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, f"{name}.jpg")
    assert no_temp_files(run_dir)


def test_corrupt_jpeg(dataset, trained, tmp_path, capsys):
    name = first_val(dataset)
    path = dataset / "JPEGImages" / f"{name}.jpg"
    path.write_bytes(path.read_bytes()[:200])
    run_dir = tmp_path / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, f"{name}.jpg")
    assert not (run_dir / "cams" / f"{name}.npz").exists() and no_temp_files(run_dir)


@pytest.fixture()
def cams_ready(dataset, trained, tmp_path):
    run_dir = tmp_path / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 0
    return args, run_dir


def test_missing_mask(dataset, cams_ready, capsys):
    """One mask gone: the others are scored, and the warning names the image without one (a
    split with masks for some images is a calibration set, docs/method.md#auto-thresholds)."""
    args, run_dir = cams_ready
    name = first_val(dataset)
    for folder in ("SegmentationClassAug", "SegmentationClass"):
        (dataset / folder / f"{name}.png").unlink()
    assert main(["eval-cam", *args]) == 0
    report = json.loads((run_dir / "eval_cam.json").read_text())
    assert any(f"none for '{name}'" in w and "scored on those only" in w
               for w in report["warnings"])
    assert f"none for '{name}'" in capsys.readouterr().err


def test_mask_size_differs_from_image(dataset, cams_ready, capsys):
    args, run_dir = cams_ready
    name = first_val(dataset)
    save_label_png(dataset / "SegmentationClassAug" / f"{name}.png", np.zeros((7, 9), np.uint8))
    assert main(["eval-cam", *args]) == 2
    expect_one_line_error(capsys, f"{name}")
    assert not (run_dir / "eval_cam.json").exists()


def test_class_id_outside_dataset(dataset, cams_ready, capsys):
    args, _ = cams_ready
    name = first_val(dataset)
    path = dataset / "SegmentationClassAug" / f"{name}.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 50
    save_label_png(path, mask)
    assert main(["eval-cam", *args]) == 2
    expect_one_line_error(capsys, f"{name}.png", "50")


def test_image_without_labels(dataset, tmp_path, capsys):
    name = (dataset / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[0]
    (dataset / "Annotations" / f"{name}.xml").write_text(
        "<annotation><filename>x.jpg</filename></annotation>")
    (dataset / "ImageSets" / "Segmentation" / "cls_labels.json").unlink(missing_ok=True)
    assert main(["train-cam", *tiny_args(dataset, tmp_path / "run")]) == 2
    expect_one_line_error(capsys, name)


def test_checkpoint_of_wrong_architecture(dataset, trained, tmp_path, capsys):
    args = [*tiny_args(dataset, tmp_path / "run"), "model.backbone=resnet18",
            f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, "final.pt", "model.backbone")
    assert not list((tmp_path / "run").glob("cams/*.npz"))


def test_config_typo(tmp_path, capsys):
    assert main(["train-cam", "train_cam.bach_size=2", f"run_dir={tmp_path}"]) == 2
    expect_one_line_error(capsys, "train_cam.bach_size", "train_cam.batch_size")
    path = tmp_path / "typo.yaml"
    path.write_text("modell:\n  backbone: resnet18\n")
    assert main(["eval-cam", "--config", str(path)]) == 2
    expect_one_line_error(capsys, "modell", "typo.yaml")


def test_debug_shows_the_traceback(tmp_path):
    from vwe.errors import VweError

    with pytest.raises(VweError):
        main(["train-cam", "--debug", f"data.root={tmp_path / 'nowhere'}",
              f"run_dir={tmp_path / 'run'}"])


def test_unwritable_run_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["eval-cam", f"run_dir={blocker / 'run'}"]) == 2
    expect_one_line_error(capsys, "run_dir", "file")


@pytest.mark.parametrize("command, setting, needle", [
    ("train-cam", "train_cam.lr=-1", "train_cam.lr=-1.0 must be > 0"),
    ("train-cam", "train_cam.lr=0", "train_cam.lr=0.0 must be > 0"),
    ("train-cam", "train_cam.batch_size=0", "train_cam.batch_size=0 must be >= 1"),
    ("train-cam", "train_cam.epochs=-3", "train_cam.epochs=-3 must be >= 1"),
    ("train-seg", "train_seg.lr=-0.1", "train_seg.lr=-0.1 must be > 0"),
    ("make-cam", "cam.scales=[1.0, -0.5]", "cam.scales=[1.0, -0.5] must be a non-empty list"),
    ("make-cam", "cam.scales=[]", "cam.scales=[] must be a non-empty list of numbers > 0"),
    ("pseudo-labels", "pseudo_labels.bg_thres=1.5", "pseudo_labels.bg_thres=1.5 must be >= 0"),
    ("pseudo-labels", "pseudo_labels.method=fast", "pseudo_labels.method='fast' must be one of"),
    ("infer-seg", "infer_seg.flip_fusion=avg", "infer_seg.flip_fusion='avg' must be one of sum"),
    ("train-irn", "train_irn.crop_size=8", "train_irn.crop_size=8 must be >= 16"),
    ("eval-cam", "eval_cam.bkg_score=2", "eval_cam.bkg_score=2 must be >= 0 and <= 1, or auto"),
    ("run", "device=tpu", "device='tpu' must be one of auto, cpu, cuda"),
])
def test_config_values_out_of_range(dataset, tmp_path, capsys, command, setting, needle):
    run_dir = tmp_path / "run"
    assert main([command, *tiny_args(dataset, run_dir), setting]) == 2
    expect_one_line_error(capsys, needle)
    assert not run_dir.exists()  # refused before any work: not even the run folder


@pytest.mark.parametrize("code, needles", [
    (28, ("no space left on the device", "cams", "free space")),
    (13, ("permission denied", "cams")),
    (30, ("read-only file system", "cams")),
    (24, ("too many open files", "ulimit")),
])
def test_os_errors_are_one_line(dataset, trained, tmp_path, capsys, monkeypatch, code, needles):
    import os

    from vwe.stages import make_cam

    def failing_save(path, **arrays):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(make_cam, "save_npz", failing_save)
    args = [*tiny_args(dataset, tmp_path / "run"), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, *needles)
    assert not list((tmp_path / "run").glob("cams/*.npz"))


def test_out_of_memory_is_one_line(dataset, trained, tmp_path, capsys, monkeypatch):
    from vwe.stages import make_cam

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(make_cam, "cams_of_images", no_memory)
    args = [*tiny_args(dataset, tmp_path / "run"), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, "out of memory in vwe make-cam", "batch size")


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped elsewhere): a disk that fills up mid-stage."""
    import os
    import subprocess

    mount = tmp_path / "small_disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazy: log.txt may be open


def test_a_real_full_disk_is_one_line_and_leaves_no_partial_file(dataset, trained, small_disk,
                                                                 capsys):
    from vwe.data.io import load_npz

    run_dir = small_disk / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt",
            "cam.split=train_aug", "cam.scales=[1.0, 0.5]"]
    assert main(["make-cam", *args]) == 2
    expect_one_line_error(capsys, "no space left on the device", "free space")
    written = list((run_dir / "cams").glob("*.npz"))
    assert 0 < len(written) < 48  # it stopped part way, with whole files only
    for path in written:  # every file there is complete
        assert set(load_npz(path)) >= {"keys", "cam", "high_res"}
    assert not [p for p in (run_dir / "cams").iterdir() if ".tmp" in p.name]


def test_a_mask_of_another_size_is_blamed_on_the_mask(dataset, trained, tmp_path, capsys):
    args = [*tiny_args(dataset, tmp_path / "run"), f"cam.checkpoint={trained}/train_cam/final.pt"]
    assert main(["make-cam", *args]) == 0
    name = (dataset / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[0]
    save_label_png(dataset / "SegmentationClassAug" / f"{name}.png", np.zeros((5, 7), np.uint8))
    capsys.readouterr()
    assert main(["eval-cam", *args]) == 2
    expect_one_line_error(capsys, f"mask {dataset}/SegmentationClassAug/{name}.png is 5x7",
                          "they must be the same size")


def test_one_corrupt_cam_file_says_delete_that_file(dataset, trained, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt",
            "cam.split=train_aug", "data.train_list=train_aug", "ir_labels.num_workers=0"]
    assert main(["make-cam", *args]) == 0
    victim = sorted((run_dir / "cams").glob("*.npz"))[2]
    victim.write_bytes(victim.read_bytes()[:100])
    capsys.readouterr()
    assert main(["ir-labels", *args]) == 2
    expect_one_line_error(capsys, str(victim), "delete that file")


def test_a_cam_file_full_of_nan_is_refused(dataset, trained, tmp_path, capsys):
    from vwe.data.io import load_npz, save_npz

    run_dir = tmp_path / "run"
    args = [*tiny_args(dataset, run_dir), f"cam.checkpoint={trained}/train_cam/final.pt",
            "cam.split=train_aug", "data.train_list=train_aug", "ir_labels.num_workers=0"]
    assert main(["make-cam", *args]) == 0
    victim = sorted((run_dir / "cams").glob("*.npz"))[1]
    arrays = load_npz(victim)
    save_npz(victim, **{**arrays, "high_res": np.full_like(arrays["high_res"], np.nan)})
    capsys.readouterr()
    assert main(["ir-labels", *args]) == 2
    expect_one_line_error(capsys, str(victim), "NaN or Inf", "delete that file")
    assert not (run_dir / "ir_labels" / f"{victim.stem}.png").exists()


def test_checkpoints_of_another_kind_or_no_checkpoint_at_all(dataset, trained, tmp_path, capsys):
    import torch

    state = torch.load(trained / "train_cam" / "final.pt", weights_only=True)
    state["arch"]["name"] = "deeplab"
    torch.save(state, tmp_path / "seg.pt")
    (tmp_path / "notes.pt").write_bytes(b"these are my notes, not a checkpoint")
    for path, needle in ((tmp_path / "seg.pt", "is a DeepLab network (train-seg) checkpoint, "
                                               "not a CAM network (train-cam) one"),
                         (tmp_path / "notes.pt", "notes.pt cannot be read safely")):
        args = [*tiny_args(dataset, tmp_path / "run"), f"cam.checkpoint={path}"]
        assert main(["make-cam", *args]) == 2
        err = capsys.readouterr().err
        assert needle in err and "weights_only=False" not in err and "\x1b" not in err
        assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert not list((tmp_path / "run").glob("cams/*.npz"))


def test_a_full_disk_during_train_cam_is_one_line(dataset, tmp_path, capsys, monkeypatch):
    import torch

    def full_disk(obj, f):  # what torch's zip writer raises when the disk fills up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 512 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    run_dir = tmp_path / "run"
    assert main(["train-cam", *tiny_args(dataset, run_dir)]) == 2
    expect_one_line_error(capsys, "no space left on the device", "last.pt", "free space")
    assert not list((run_dir / "train_cam").glob("*.pt"))


class Pickled:
    """An arbitrary Python object: loading it means unpickling, which vwe never does."""


def test_a_pickled_checkpoint_is_refused_in_plain_words(dataset, tmp_path, capsys):
    import torch

    torch.save({"model": {"w": torch.zeros(1)}, "extra": Pickled()}, tmp_path / "pickled.pt")
    assert main(["make-cam", *tiny_args(dataset, tmp_path / "run"),
                 f"cam.checkpoint={tmp_path / 'pickled.pt'}"]) == 2
    err = capsys.readouterr().err
    assert "pickled.pt cannot be read safely (it holds pickled Python objects" in err
    assert "weights_only" not in err and "\x1b" not in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def tiny_coco_root(tmp_path_factory):
    """The tiny generated dataset in COCO format, not yet prepared (a test copies it)."""
    root = tmp_path_factory.mktemp("coco") / "coco"
    assert main(["make-dataset", f"data.root={root}", "synthetic.size=tiny",
                 "synthetic.format=coco", f"run_dir={root.parent / 'run'}"]) == 0
    return root


@pytest.fixture()
def coco(tiny_coco_root, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(tiny_coco_root, root)
    return root


def test_coco_images_missing_is_one_line_with_the_count(coco, tmp_path, capsys):
    first = sorted((coco / "val2014").glob("*.jpg"))[0]
    first.unlink()
    assert main(["prepare-coco", f"data.root={coco}", f"run_dir={tmp_path / 'run'}"]) == 2
    expect_one_line_error(capsys, "1 of 16 images listed in", "instances_val2014.json",
                          f"the first {first}")
    assert not (coco / "vwe_prepared" / "masks").exists() and no_temp_files(coco)


def test_a_coco_json_that_is_not_coco_is_one_line(coco, tmp_path, capsys):
    (coco / "annotations" / "instances_train2014.json").write_text('{"images": []}')
    assert main(["prepare-coco", f"data.root={coco}", f"run_dir={tmp_path / 'run'}"]) == 2
    expect_one_line_error(capsys, "instances_train2014.json lack the list 'annotations'")


def test_a_stage_on_unprepared_or_stale_coco_is_one_line(coco, tmp_path, capsys):
    args = [*tiny_args(coco, tmp_path / "run"), "data.format=coco"]
    assert main(["train-cam", *args]) == 2
    expect_one_line_error(capsys, "not prepared", "run `vwe prepare-coco`")
    assert main(["prepare-coco", *args]) == 0
    capsys.readouterr()
    assert main(["train-cam", *args, "data.coco_crowd=ignore"]) == 2
    expect_one_line_error(capsys, "is stale", "data.coco_crowd: background → ignore",
                          "run `vwe prepare-coco`")


def test_a_coco_pretrained_deeplab_is_refused_for_coco(coco, tmp_path, capsys):
    args = [f"data.root={coco}", "data.format=coco", "data.coco_crowd=ignore",
            f"run_dir={tmp_path / 'run'}", "data.num_workers=0"]
    assert main(["prepare-coco", *args]) == 0
    capsys.readouterr()
    assert main(["train-seg", *args, f"seg.label_dir={coco / 'vwe_prepared' / 'masks'}",
                 "seg.backbone=resnet_tiny", "seg.pretrained=coco", "train_seg.train_list=val",
                 "train_seg.batch_size=2", "train_seg.crop_size=64", "device=cpu"]) == 2
    expect_one_line_error(capsys, "seg.pretrained=coco is a COCO-pretrained initialisation",
                          "data.format=coco", "seg.pretrained=imagenet")


@pytest.mark.parametrize("edit, needle", [
    (lambda rows, tag: [*rows, "extra.jpg,no_such_class"], "has tag 'no_such_class', not among"),
    (lambda rows, tag: [*rows, f"ghost.jpg,{tag}"], "lists 'ghost' but"),
    (lambda rows, tag: [*rows, rows[1]], "is listed twice"),
    (lambda rows, tag: ["file,labels", *rows[1:]], "needs the columns name,tags"),
    (lambda rows, tag: [*rows, "extra.jpg,"], "image 'extra' has no tags"),
])
def test_a_bad_tags_file_stops_train_cam_in_one_line_writing_nothing(
        tiny_dataset, tmp_path, voc_to_folder, capsys, edit, needle):
    images, _ = voc_to_folder(tiny_dataset, tmp_path / "folder")
    tags = images / "tags.csv"
    rows = tags.read_text().splitlines()
    first_name, first_tags = rows[1].split(",", 1)
    shutil.copy(images / first_name if (images / first_name).is_file()
                else next(images.glob("*.jpg")), images / "extra.jpg")
    tags.write_text("\n".join(edit(rows, first_tags.replace(";", " ").split()[0])) + "\n")
    run_dir = tmp_path / "run"
    assert main(["train-cam", *tiny_args(images, run_dir), "data.format=folder"]) == 2
    expect_one_line_error(capsys, needle, str(tags))
    assert not (run_dir / "train_cam").exists()


def write_config(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return ["--config", str(path)]


@pytest.mark.parametrize("args, needles", [
    (lambda t: write_config(t, "dup.yaml", "train_cam:\n  lr: 0.1\ntrain_cam:\n  epochs: 2\n"),
     ["key 'train_cam' is given twice (first on line 1)", "(line 3)"]),
    (lambda t: write_config(t, "bin.yaml", b"\x7fELF\x02\x01\x01\x00\xff\xfe"),
     ["bin.yaml is not UTF-8 text", "save it as UTF-8"]),
    (lambda t: write_config(t, "bom.yaml", "\ufeffdata: 5\n"),  # BOM read, then the shape
     ["config key 'data' in", "is a section, not a value", "data.classes=…"]),
    (lambda t: ["--config", str(t)], ["is a folder; pass a YAML file"]),
    (lambda t: ["train_cam=3"], ["'train_cam' in the command line is a section"]),
    (lambda t: ["preset=[paper]"], ["unknown preset", "choose one of paper"]),
    (lambda t: ["train_cam.resize_long=[96,48]"],
     ["train_cam.resize_long=[96, 48] must be a pair"]),
    (lambda t: ["train_cam.resize_long=[96]"], ["train_cam.resize_long=[96] must be a pair"]),
    (lambda t: ["cam.scales=[inf]"], ["cam.scales=[inf] must be"]),
    (lambda t: ["train_cam.lr=.inf"], ["train_cam.lr=inf must be"]),
    (lambda t: ["seg.msc_scales=[0.001]"], ["seg.msc_scales=[0.001] must be", ">= 0.125"]),
])
def test_config_shapes_and_text_are_one_line_and_write_nothing(tmp_path, capsys, args, needles):
    run_dir = tmp_path / "run"
    assert main(["eval-cam", *args(tmp_path), f"run_dir={run_dir}",
                 f"data.root={tmp_path / 'data'}"]) == 2
    expect_one_line_error(capsys, *needles)
    assert not run_dir.exists()


@pytest.mark.parametrize("content, kind", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "it is a JPEG image, not a PyTorch file"),
    (b'{"model": {}}', "it is JSON or text, not a PyTorch file"),
    (b"", "it is empty, not a PyTorch file"),
])
def test_a_file_that_is_no_checkpoint_is_named_for_what_it_is(dataset, tmp_path, capsys,
                                                              content, kind):
    (tmp_path / "final.pt").write_bytes(content)
    args = [*tiny_args(dataset, tmp_path / "run"), f"cam.checkpoint={tmp_path / 'final.pt'}"]
    assert main(["make-cam", *args]) == 2
    line = expect_one_line_error(capsys, "final.pt cannot be read safely", kind)
    assert "pickled" not in line


def folder_dataset(root, names=("a", "b"), suffix=".png"):
    root.mkdir(parents=True)
    (root / "tags.csv").write_text("name,tags\n" + "".join(f"{n},cat\n" for n in names))
    for name in names:
        Image.fromarray(np.full((20, 20, 3), 99, np.uint8)).save(root / f"{name}{suffix}")
    return root


def test_an_unsupported_image_type_is_named_with_the_fix(tmp_path, capsys):
    root = folder_dataset(tmp_path / "photos", suffix=".gif")
    assert main(["train-cam", f"data.root={root}", "data.format=folder",
                 f"run_dir={tmp_path / 'run'}"]) == 2
    expect_one_line_error(capsys, "a.gif is not a supported image type", "convert it", ".png")


def test_macos_companion_files_are_not_images(tmp_path):
    from vwe.data.folder import FolderLayout

    root = folder_dataset(tmp_path / "photos")
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # what macOS copies leave
    assert sorted(FolderLayout(root).images) == ["a", "b"]


def test_an_image_above_pillows_size_limit_is_called_too_large_not_corrupt(tmp_path,
                                                                          monkeypatch):
    from vwe.data.io import image_size, read_image
    from vwe.errors import VweError

    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 2000 px is 4x the limit: a "bomb"
    for reader in (read_image, image_size):
        with pytest.raises(VweError) as err:
            reader(path)
        assert "megapixels" in str(err.value) and "downscale it" in str(err.value)
        assert "corrupt" not in str(err.value)


def test_run_dir_empty_report_of_no_run_and_resume_of_nothing(tmp_path, capsys, monkeypatch,
                                                              dataset):
    monkeypatch.chdir(tmp_path)
    assert main(["eval-cam", "run_dir="]) == 2
    expect_one_line_error(capsys, "run_dir is empty", "run_dir=runs/mine")
    assert main(["report", str(tmp_path / "no_such_run")]) == 2
    expect_one_line_error(capsys, "no_such_run does not exist", "vwe report runs/demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # only the dataset fixture
    assert main(["train-cam", "--resume", *tiny_args(dataset, tmp_path / "fresh")]) == 0
    assert "has no last.pt; train-cam starts at step 0" in capsys.readouterr().err
