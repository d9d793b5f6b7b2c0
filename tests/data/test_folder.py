"""The `folder` format: the same images, labels and masks as the VOC reader on the same data,
a deterministic hash split, CSV and JSON tags, and one line for every bad tags file."""

import json
import logging

import numpy as np
import pytest

from vwe.cli import main
from vwe.config import DataConfig
from vwe.data.folder import FolderLayout, hash_fraction
from vwe.data.io import read_image
from vwe.data.voc import VocLayout, open_dataset
from vwe.errors import VweError


@pytest.mark.parametrize("as_json", [False, True])
def test_same_labels_masks_and_images_as_the_voc_reader(tiny_dataset, tmp_path, as_json,
                                                        voc_to_folder):
    images, masks = voc_to_folder(tiny_dataset, tmp_path, as_json=as_json)
    tags = images / ("tags.json" if as_json else "tags.csv")
    folder = open_dataset(DataConfig(format="folder", root=str(images), tags=str(tags),
                                     masks=str(masks)))
    voc = VocLayout(tiny_dataset)
    assert isinstance(folder, FolderLayout) and folder.class_names == voc.class_names
    for split in ("train_aug", "train", "val"):
        names, labels = folder.split_with_labels(split)
        assert names == voc.read_split(split)
        want = voc.image_labels(split)
        assert all(np.array_equal(labels[n], want[n]) for n in names)
    for name in voc.read_split("val")[:4]:
        np.testing.assert_array_equal(folder.read_checked_mask(name), voc.read_mask(name))
        np.testing.assert_array_equal(read_image(folder.image_path(name)),
                                      read_image(voc.image_path(name)))


def test_hash_split_without_lists(tmp_path, fake_voc):
    (tmp_path / "tags.csv").write_text("name,tags\n" + "".join(
        f"img{i},cat dog\n" for i in range(200)))
    for i in range(200):
        (tmp_path / f"img{i}.png").write_bytes(b"")  # names only; nothing decodes them here
    layout = FolderLayout(tmp_path, val_fraction=0.2)
    train, val = layout.read_split("train"), layout.read_split("val")
    assert set(train) | set(val) == {f"img{i}" for i in range(200)} and not set(train) & set(val)
    assert 20 <= len(val) <= 60 and layout.read_split("train_aug") == train
    assert all(hash_fraction(n) < 0.2 for n in val)
    assert layout.class_names == ["cat", "dog"]  # the sorted tags, no classes.txt
    with pytest.raises(VweError, match="split 'test' .* is not defined"):
        layout.read_split("test")


@pytest.mark.parametrize("tags, files, needle", [
    ("name,tags\na,cat\nb,bird\n", ["a.jpg", "b.jpg"], "image 'b' has tag 'bird', not among"),
    ("name,tags\na,cat\nc,cat\n", ["a.jpg"], "lists 'c' but"),
    ("name,tags\na,cat\na,dog\n", ["a.jpg"], "line 3: image 'a' is listed twice"),
    ("file,labels\na,cat\n", ["a.jpg"], "needs the columns name,tags (found file, labels)"),
    ("name,tags\na,\n", ["a.jpg"], "line 2: image 'a' has no tags"),
    ("name,tags\na,cat\n", ["a.jpg", "a.png"], "two images are named 'a'"),
])
def test_bad_tags_files_are_one_line(tmp_path, tags, files, needle):
    (tmp_path / "tags.csv").write_text(tags)
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    for name in files:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(VweError) as err:
        FolderLayout(tmp_path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unlisted_images_are_a_warning_with_the_count(tmp_path, caplog):
    (tmp_path / "tags.csv").write_text("name,tags\na,cat\n")
    for name in ("a.jpg", "b.jpg", "c.webp"):
        (tmp_path / name).write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="vwe.data.folder"):
        layout = FolderLayout(tmp_path)
    assert list(layout.images) == ["a"] and "2 images" in caplog.text


def test_the_cam_stage_on_the_folder_format_equals_voc(tiny_dataset, tmp_path, voc_to_folder,
                                                       single_torch_thread):
    images, masks = voc_to_folder(tiny_dataset, tmp_path / "folder")
    common = ["data.num_workers=0", "device=cpu", "model.backbone=resnet_tiny",
              "model.pretrained=none", "model.num_words=8", "train_cam.batch_size=4",
              "train_cam.max_steps=4", "train_cam.crop_size=64", "cam.split=val",
              "cam.scales=[1.0]", "eval_cam.split=val", "eval_cam.sweep=false"]
    runs = {"voc": [f"data.root={tiny_dataset}"],
            "folder": ["data.format=folder", f"data.root={images}", f"data.masks={masks}"]}
    for kind, data in runs.items():
        for command in ("train-cam", "make-cam", "eval-cam"):
            assert main([command, *common, *data, f"run_dir={tmp_path / kind}"]) == 0, command
    scores = {kind: json.loads((tmp_path / kind / "eval_cam.json").read_text())
              for kind in runs}
    assert scores["folder"]["variants"] == scores["voc"]["variants"]
