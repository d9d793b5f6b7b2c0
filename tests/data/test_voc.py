"""The VOC layout reader: names as strings, XML labels, the JSON cache, masks, datasets, errors."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vwe.data import voc
from vwe.data.io import save_label_png
from vwe.data.transforms import TrainTransform
from vwe.data.voc import VOC_CLASSES, ClassificationDataset, InferenceDataset, VocLayout
from vwe.errors import VweError

NAMES = ["2007_000032", "2007_000039", "2008_000002"]


@pytest.fixture()
def layout(tmp_path, fake_voc):
    fake_voc(tmp_path, {
        "2007_000032": ["aeroplane", "person:difficult", "aeroplane"],
        "2007_000039": ["tvmonitor"],
        "2008_000002": ["cat", "dog", "sofa", "cat"],
    }, {"train": NAMES, "val": NAMES[:1]})
    return VocLayout(tmp_path)


def multi_hot(*indices, num=20):
    vector = np.zeros(num, dtype=np.float32)
    vector[list(indices)] = 1
    return vector


def test_default_classes_are_the_20_voc_classes(layout):
    assert layout.class_names == list(VOC_CLASSES) and layout.num_classes == 20
    assert layout.class_names[14] == "person" and layout.class_names[19] == "tvmonitor"


def test_split_names_stay_strings(layout):
    assert layout.read_split("train") == NAMES


def test_xml_labels_to_multi_hot_by_hand(layout):
    labels = layout.image_labels("train")
    assert list(labels) == NAMES
    # aeroplane = 0, person = 14 (difficult counts), tvmonitor = 19, cat 7, dog 11, sofa 17
    np.testing.assert_array_equal(labels["2007_000032"], multi_hot(0, 14))
    np.testing.assert_array_equal(labels["2007_000039"], multi_hot(19))
    np.testing.assert_array_equal(labels["2008_000002"], multi_hot(7, 11, 17))
    assert all(v.dtype == np.float32 and v.shape == (20,) for v in labels.values())


def test_labels_cache_is_plain_json_and_is_used(layout, tmp_path):
    layout.image_labels("val")
    cache = tmp_path / "ImageSets" / "Segmentation" / "cls_labels.json"
    data = json.loads(cache.read_text())
    xml = tmp_path / "Annotations" / "2007_000032.xml"
    stat = xml.stat()
    assert data["labels"] == {"2007_000032": {"labels": [0, 14],
                                              "stamp": [stat.st_size, stat.st_mtime_ns]}}
    data["labels"]["2007_000032"]["labels"] = [3]  # a cache entry whose stamp still fits
    cache.write_text(json.dumps(data))
    np.testing.assert_array_equal(VocLayout(tmp_path).image_labels("val")["2007_000032"],
                                  multi_hot(3))  # the cache answered
    xml.write_text("<annotation><object><name>cat</name></object></annotation>")  # in place
    os.utime(xml.parent, ns=(1, 1))  # the folder's time says nothing: the file's stamp counts
    np.testing.assert_array_equal(VocLayout(tmp_path).image_labels("val")["2007_000032"],
                                  multi_hot(7))
    labels = VocLayout(tmp_path).image_labels("train")  # missing names get added
    np.testing.assert_array_equal(labels["2007_000039"], multi_hot(19))
    assert set(json.loads(cache.read_text())["labels"]) == set(NAMES)


def test_labels_cache_rebuilt_when_classes_change(tmp_path, fake_voc):
    fake_voc(tmp_path, {"a": ["x"], "b": ["y", "x"]}, {"train": ["a", "b"]}, classes=["x", "y"])
    assert VocLayout(tmp_path).image_labels("train")["b"].tolist() == [1, 1]
    (tmp_path / "classes.txt").write_text("y\nx\nz\n")
    labels = VocLayout(tmp_path).image_labels("train")
    assert labels["a"].tolist() == [0, 1, 0] and labels["b"].tolist() == [1, 1, 0]


def test_labels_cache_falls_back_when_the_root_is_read_only(layout, tmp_path, monkeypatch):
    real_write = voc.write_json_atomic

    def refuse_inside_root(path, data, indent=None):
        if tmp_path / "ImageSets" in path.parents:
            raise PermissionError(f"read-only: {path}")
        real_write(path, data, indent=indent)

    monkeypatch.setattr(voc, "write_json_atomic", refuse_inside_root)
    cache_dir = tmp_path.parent / (tmp_path.name + "_cache")
    labels = VocLayout(tmp_path, cache_dir=cache_dir).image_labels("train")
    assert len(labels) == 3
    written = list(cache_dir.glob("cls_labels-*.json"))
    assert len(written) == 1 and set(json.loads(written[0].read_text())["labels"]) == set(NAMES)
    assert not (tmp_path / "ImageSets" / "Segmentation" / "cls_labels.json").exists()


def test_classes_txt_sets_the_class_count(tmp_path, fake_voc):
    fake_voc(tmp_path, {"img_1": ["b", "c"]}, {"train": ["img_1"]}, classes=["a", "b", "c"])
    layout = VocLayout(tmp_path)
    assert layout.num_classes == 3
    assert layout.image_labels("train")["img_1"].tolist() == [0, 1, 1]


def test_mask_path_falls_back_to_segmentation_class(layout, tmp_path):
    assert layout.mask_path("2007_000032") == \
        tmp_path / "SegmentationClass" / "2007_000032.png"
    aug = tmp_path / "SegmentationClassAug"
    aug.mkdir()
    save_label_png(aug / "2007_000032.png", np.zeros((10, 12), np.uint8))
    assert layout.mask_path("2007_000032") == aug / "2007_000032.png"


def test_read_mask_checks(layout, tmp_path):
    mask = layout.read_mask("2007_000032", image_size=(10, 12))
    assert mask[3, 4] == 1 and mask[0, 0] == 255 and mask[9, 11] == 0
    path = tmp_path / "SegmentationClass" / "2007_000039.png"
    bad = np.zeros((10, 12), np.uint8)
    bad[5, 5] = 21
    save_label_png(path, bad)
    with pytest.raises(VweError, match=r"2007_000039\.png.*21"):
        layout.read_mask("2007_000039")
    assert layout.read_mask("2007_000039", num_classes=21)[5, 5] == 21
    with pytest.raises(VweError, match=r"2007_000032\.png.*2007_000032\.jpg"):
        layout.read_mask("2007_000032", image_size=(11, 12))


@pytest.mark.parametrize(("xml_objects", "message"), [
    (["aeroplane", "spaceship"], r"2007_000039\.xml.*spaceship"),
    ([], r"2007_000039.*no labelled object.*drop it"),
])
def test_bad_annotations_name_the_file(layout, tmp_path, xml_objects, message):
    body = "".join(f"<object><name>{n}</name></object>" for n in xml_objects)
    (tmp_path / "Annotations" / "2007_000039.xml").write_text(f"<annotation>{body}</annotation>")
    with pytest.raises(VweError, match=message):
        layout.image_labels("train")


def test_missing_or_broken_xml_names_the_file(layout, tmp_path):
    xml = tmp_path / "Annotations" / "2008_000002.xml"
    xml.write_text("<annotation><object>")
    with pytest.raises(VweError, match=r"2008_000002\.xml"):
        layout.image_labels("train")
    xml.unlink()
    with pytest.raises(VweError, match=r"2008_000002\.xml.*not found"):
        layout.image_labels("train")


def test_missing_root_list_and_empty_list(tmp_path, layout):
    with pytest.raises(VweError, match="nowhere"):
        VocLayout(tmp_path / "nowhere")
    with pytest.raises(VweError, match=r"test\.txt"):
        layout.read_split("test")
    (tmp_path / "ImageSets" / "Segmentation" / "empty.txt").write_text("\n")
    with pytest.raises(VweError, match=r"empty\.txt.*empty"):
        layout.read_split("empty")


def test_missing_and_corrupt_images_name_the_file(layout, tmp_path):
    dataset = InferenceDataset(layout, "train")
    (tmp_path / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(VweError, match=r"2007_000039\.jpg"):
        dataset[1]
    jpeg = tmp_path / "JPEGImages" / "2008_000002.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    with pytest.raises(VweError, match=r"2008_000002\.jpg"):
        dataset[2]


def test_inference_dataset_gives_raw_images(layout, tmp_path):
    item = InferenceDataset(layout, "train")[0]
    expected = np.asarray(Image.open(tmp_path / "JPEGImages" / "2007_000032.jpg").convert("RGB"))
    assert item["name"] == "2007_000032" and item["image"].dtype == np.uint8
    np.testing.assert_array_equal(item["image"], expected)
    np.testing.assert_array_equal(item["label"], multi_hot(0, 14))
    assert "label" not in InferenceDataset(layout, "train", with_labels=False)[0]


def test_classification_dataset_items_and_determinism(layout):
    transform = TrainTransform(crop_size=16, resize_long=(8, 24), flip_prob=0.5)
    dataset = ClassificationDataset(layout, "train", transform, seed=3)
    item = dataset[2]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["name"] == "2008_000002"
    torch.testing.assert_close(item["label"], torch.from_numpy(multi_hot(7, 11, 17)))
    backwards = [dataset[i]["image"] for i in reversed(range(3))][::-1]
    again = ClassificationDataset(layout, "train", transform, seed=3)
    for i in range(3):
        assert torch.equal(again[i]["image"], backwards[i])  # order and instance don't matter
    epochs = []
    for epoch in range(4):
        again.set_epoch(epoch)
        epochs.append(torch.stack([again[i]["image"] for i in range(3)]))
    assert torch.equal(epochs[0], torch.stack(backwards))
    assert any(not torch.equal(epochs[0], e) for e in epochs[1:])


def test_classification_dataset_independent_of_workers(layout):
    transform = TrainTransform(crop_size=16, resize_long=(8, 24), flip_prob=0.5)
    dataset = ClassificationDataset(layout, "train", transform, seed=1)
    dataset.set_epoch(2)
    batches = []
    for workers in (0, 2):
        loader = DataLoader(dataset, batch_size=2, num_workers=workers)
        batches.append(torch.cat([b["image"] for b in loader]))
    assert torch.equal(batches[0], batches[1])
