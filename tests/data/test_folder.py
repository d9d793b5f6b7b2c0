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
    ('{"a": ["cat"],\n "b": ["dog"]}', ["a.jpg"], "holds JSON, not CSV; rename it to tags.json"),
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


def _folder_with_lists(root, lists: dict[str, list[str]], count: int = 40):
    (root / "tags.csv").write_text("name,tags\n" + "".join(
        f"img{i},cat\n" for i in range(count)))
    for i in range(count):
        (root / f"img{i}.png").write_bytes(b"")
    (root / "splits").mkdir()
    for split, names in lists.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return FolderLayout(root, val_fraction=0.5)


@pytest.mark.parametrize("lists", [
    {"train": [f"img{i}" for i in range(30)], "val": [f"img{i}" for i in range(30, 40)]},
    {"val": [f"img{i}" for i in range(30, 40)]},  # no train list: every other image
    {"train": [f"img{i}" for i in range(30)]},  # no val list: every other image
])
def test_train_aug_never_holds_a_val_image(tmp_path, lists, caplog):
    with caplog.at_level(logging.INFO, logger="vwe.data.folder"):
        layout = _folder_with_lists(tmp_path, lists)
        train_aug, val = layout.read_split("train_aug"), layout.read_split("val")
    assert set(val) == {f"img{i}" for i in range(30, 40)}
    assert set(train_aug) == {f"img{i}" for i in range(30)}  # not the 40 tagged (the old leak)
    assert "train.txt" in caplog.text or "not in val" in caplog.text  # says which list


def test_a_cam_run_on_train_val_lists_never_trains_on_val(tiny_dataset, tmp_path,
                                                           voc_to_folder):
    images, _ = voc_to_folder(tiny_dataset, tmp_path / "folder")
    (images / "splits" / "train_aug.txt").unlink()
    val = set((images / "splits" / "val.txt").read_text().split())
    assert main(["train-cam", "data.format=folder", f"data.root={images}",
                 "data.num_workers=0", "device=cpu", "model.backbone=resnet_tiny",
                 "model.pretrained=none", "model.num_words=8", "train_cam.batch_size=4",
                 "train_cam.max_steps=1", "train_cam.crop_size=64",
                 f"run_dir={tmp_path / 'run'}"]) == 0
    train = (images / "splits" / "train.txt").read_text().split()
    assert val and not val & set(train)
    logged = (tmp_path / "run" / "log.txt").read_text()
    assert "using splits/train.txt" in logged
    assert f"over {len(train)} training images" in logged  # not train + val


def test_images_and_masks_subfolders_are_found_without_keys(tiny_dataset, tmp_path,
                                                             voc_to_folder):
    """The layout people have: root/{images/, masks/, tags.csv, classes.txt, splits/}."""
    images, masks = voc_to_folder(tiny_dataset, tmp_path / "out")
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    for path in images.iterdir():
        path.rename((root / "images" if path.suffix in (".jpg", ".png") else root) / path.name)
    masks.rename(root / "masks")
    layout = open_dataset(DataConfig(format="folder", root=str(root)))
    voc = VocLayout(tiny_dataset)
    assert layout.read_split("val") == voc.read_split("val")
    assert layout.class_names == voc.class_names  # classes.txt in the root, not images/
    name = voc.read_split("val")[0]
    np.testing.assert_array_equal(layout.read_checked_mask(name), voc.read_mask(name))
    # the images folder given as the root: one line naming the root to set
    with pytest.raises(VweError, match=rf"holds no tags.csv, but its parent does: set "
                                       rf"data.root={root.resolve()}"):
        open_dataset(DataConfig(format="folder", root=str(root / "images")))


def test_negatives_join_training_splits_with_all_zero_labels(tmp_path):
    layout_args = {"val_fraction": 0.0}
    (tmp_path / "tags.csv").write_text("name,tags\na,cat\nb,dog\n")
    for name in ("a.jpg", "b.jpg", "sky.jpg", "field.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "negatives.txt").write_text("sky\nfield.jpg\n")
    layout = FolderLayout(tmp_path, negatives="negatives.txt", **layout_args)
    names, labels = layout.split_with_labels("train_aug")
    assert names == ["a", "b", "sky", "field"]
    assert not labels["sky"].any() and labels["a"].tolist() == [1.0, 0.0]
    assert FolderLayout(tmp_path, **layout_args).read_split("train") == ["a", "b"]  # off
    (tmp_path / "negatives.txt").write_text("sky\na\n")
    with pytest.raises(VweError, match="names 'a', which has tags"):
        FolderLayout(tmp_path, negatives="negatives.txt")
    with pytest.raises(VweError, match="negatives list .*none.txt not found"):
        FolderLayout(tmp_path, negatives="none.txt")


BOM = "\ufeff"


@pytest.mark.parametrize("bom_in", ["tags.csv", "classes.txt", "splits/train.txt"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path, bom_in):
    """Excel's "CSV UTF-8" starts the file with a BOM; every text file reads the same with it."""
    files = {"tags.csv": "name,tags\na,cat\nb,dog\n", "classes.txt": "cat\ndog\n",
             "splits/train.txt": "a\n", "splits/val.txt": "b\n"}
    files[bom_in] = BOM + files[bom_in]
    (tmp_path / "splits").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    layout = FolderLayout(tmp_path)
    assert layout.class_names == ["cat", "dog"]
    assert layout.read_split("train") == ["a"] and layout.read_split("val") == ["b"]


@pytest.mark.parametrize("bad_file, content, needle", [
    ("tags.csv", "name,tags\ncaf\xe9,cat\n".encode("latin-1"),
     "tags file {root}/tags.csv is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
    ("classes.txt", b"cat\n\xff\xfe\n", "class list {root}/classes.txt is not UTF-8 text"),
    ("classes.txt", b"cat\ndog\ncat\n", "names cat more than once"),
    ("splits/train.txt", b"a\n\x89PNG\x00\xff\n", "split list {root}/splits/train.txt is not"),
])
def test_text_files_that_are_not_utf8_or_repeat_a_class_are_one_line(tmp_path, bad_file,
                                                                     content, needle):
    (tmp_path / "splits").mkdir()
    (tmp_path / "tags.csv").write_text("name,tags\na,cat\nb,dog\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / bad_file).write_bytes(content)
    with pytest.raises(VweError) as err:
        FolderLayout(tmp_path).read_split("train")
    assert needle.format(root=tmp_path) in str(err.value) and "\n" not in str(err.value)
