"""The generated dataset: VOC layout, determinism, ground truth consistent with the XML."""

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from vwe.config import DataConfig, SyntheticConfig
from vwe.data.folder import copy_as_folder
from vwe.data.io import read_image
from vwe.data.synthetic import (
    design,
    existing_summary,
    generate_dataset,
    render_image,
    resolve_config,
)
from vwe.data.voc import VocLayout, open_dataset
from vwe.errors import VweError

SMALL = SyntheticConfig(size="tiny", num_train_aug=6, num_train=2, num_val=2, num_test=1)


def file_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate_dataset(tmp_path / "a", SMALL)
    generate_dataset(tmp_path / "b", SMALL)
    generate_dataset(tmp_path / "c", replace(SMALL, seed=1))
    first, second, other = (file_hashes(tmp_path / k) for k in "abc")
    assert len(first) == 5 * 9 + 4 + 2  # 5 files per image, 4 lists, classes.txt, record
    assert first == second
    images = [k for k in first if k.startswith("JPEGImages")]
    assert all(first[k] != other[k] for k in images)


def test_layout_is_complete(tiny_dataset):
    layout = VocLayout(tiny_dataset)
    splits = {s: layout.read_split(s) for s in ("train_aug", "train", "val", "test")}
    assert {s: len(n) for s, n in splits.items()} == \
        {"train_aug": 48, "train": 16, "val": 16, "test": 8}
    assert set(splits["train"]) <= set(splits["train_aug"])
    assert not set(splits["val"]) & set(splits["train_aug"])
    assert not set(splits["test"]) & (set(splits["train_aug"]) | set(splits["val"]))
    assert layout.num_classes == 8 and len(set(layout.class_names)) == 8
    for name in splits["train_aug"] + splits["val"] + splits["test"]:
        for folder, suffix in (("JPEGImages", "jpg"), ("SegmentationClass", "png"),
                               ("SegmentationClassAug", "png"), ("Annotations", "xml")):
            assert (tiny_dataset / folder / f"{name}.{suffix}").is_file()
        aug = tiny_dataset / "SegmentationClassAug" / f"{name}.png"
        assert aug.read_bytes() == (tiny_dataset / "SegmentationClass" / f"{name}.png").read_bytes()


def all_names(root):
    layout = VocLayout(root)
    return layout, layout.read_split("train_aug") + layout.read_split("val")


def test_masks_sizes_and_ignore_band(tiny_dataset):
    layout, names = all_names(tiny_dataset)
    sizes = set()
    for name in names:
        image = read_image(layout.image_path(name))
        mask = layout.read_mask(name, image_size=image.shape[:2])  # ids and size checked
        assert Image.open(layout.mask_path(name)).mode == "P"
        sizes.add(image.shape[:2])
        assert 64 <= min(image.shape[:2]) and max(image.shape[:2]) <= 96
        band = mask == 255
        assert band.any() and band.mean() < 0.25
        padded = np.pad(band, 2)
        inner = np.ones_like(band)
        for dy in range(5):
            for dx in range(5):
                inner &= padded[dy:dy + band.shape[0], dx:dx + band.shape[1]]
        assert inner.sum() <= 0.05 * band.sum()  # thin: rarely a 5×5 block of band
        xml = ET.parse(layout.xml_path(name)).getroot()
        assert int(xml.findtext("size/height")) == image.shape[0]
        assert int(xml.findtext("size/width")) == image.shape[1]
    assert len(sizes) > len(names) // 2
    assert any(h != w for h, w in sizes)
    assert any(h % 16 or w % 16 for h, w in sizes)


def test_xml_labels_agree_with_mask_classes(tiny_dataset):
    layout, names = all_names(tiny_dataset)
    labels = layout.labels_for(names)
    agree = 0
    for name in names:
        mask = layout.read_mask(name)
        in_mask = {int(v) - 1 for v in np.unique(mask) if 0 < v < 255}
        in_xml = set(np.flatnonzero(labels[name]).tolist())
        assert in_mask <= in_xml
        agree += in_mask == in_xml
    assert agree >= 0.95 * len(names)


def test_several_objects_and_classes_per_image(tiny_dataset):
    layout, names = all_names(tiny_dataset)
    objects = [len(ET.parse(layout.xml_path(n)).getroot().findall("object")) for n in names]
    classes = [int(v.sum()) for v in layout.labels_for(names).values()]
    assert max(objects) >= 3 and min(objects) >= 1 and max(classes) >= 2
    per_class = np.sum(list(layout.labels_for(names).values()), axis=0)
    assert per_class.min() >= 2  # every class is represented


def test_families_share_a_body_and_differ_by_the_mark():
    looks, backgrounds = design(SyntheticConfig())
    families = {}
    for look in looks:
        families.setdefault((look.shape, look.body_colours, look.body_pattern), []).append(look)
    assert len(families) < len(looks) and max(len(f) for f in families.values()) >= 2
    for members in families.values():
        assert len({m.mark_colour for m in members}) == len(members)
    context = [look for look in looks if look.context_bg >= 0]
    assert context and len({look.context_bg for look in context}) == len(context)
    assert len(backgrounds) > len(context)


def test_full_frame_images_have_one_large_object():
    cfg = resolve_config(replace(SMALL, full_frame_prob=1.0))
    looks, backgrounds = design(cfg)
    for index in range(4):
        _, mask, objects, _ = render_image(cfg, looks, backgrounds, index)
        assert len(objects) == 1 and np.mean(mask > 0) > 0.6


def test_tiny_defaults_and_explicit_fields():
    tiny = resolve_config(SyntheticConfig(size="tiny"))
    assert (tiny.num_train_aug, tiny.num_val, tiny.min_side, tiny.max_side) == (48, 16, 64, 96)
    assert resolve_config(SyntheticConfig(size="tiny", num_val=5)).num_val == 5
    assert resolve_config(SyntheticConfig()).num_train_aug == 2000


@pytest.mark.parametrize(("field", "value"), [("size", "huge"), ("num_train", 10_000),
                                              ("min_side", 200), ("part_fraction", 1.5)])
def test_bad_config_names_the_key(field, value):
    with pytest.raises(VweError, match=f"synthetic.{field}"):
        resolve_config(replace(SyntheticConfig(), **{field: value}))


def test_tiny_generation_is_fast(tmp_path):
    start = time.perf_counter()
    summary = generate_dataset(tmp_path, SyntheticConfig(size="tiny"))
    assert time.perf_counter() - start < 10.0  # about 0.2 s on an idle core
    assert summary["images"] == {"train_aug": 48, "train": 16, "val": 16, "test": 8}


def test_the_voc_record_is_as_before_formats_existed(tiny_dataset):
    record = json.loads((tiny_dataset / "synthetic.json").read_text())
    assert "format" not in record["config"] and "format" not in record["resolved"]


def test_folder_format_equals_the_voc_layout_copied_as_a_folder(tiny_dataset, tmp_path):
    root = tmp_path / "folder"
    generate_dataset(root, SyntheticConfig(size="tiny", seed=0, format="folder"))
    voc = VocLayout(tiny_dataset)
    splits = {s: voc.read_split(s) for s in ("train_aug", "train", "val", "test")}
    copy = tmp_path / "copy"
    copy_as_folder(voc, copy, copy / "masks", splits["train_aug"] + splits["val"] + splits["test"],
                   splits)
    record = json.loads((root / "synthetic.json").read_text())
    assert record["config"]["format"] == "folder"
    made = file_hashes(root)
    del made["synthetic.json"]
    assert made == file_hashes(copy)
    folder = open_dataset(DataConfig(format="folder", root=str(root), masks=str(root / "masks")))
    assert folder.read_split("train") == splits["train"]
    assert existing_summary(root, SyntheticConfig(size="tiny", seed=0, format="folder"))


def test_part_maps_split_each_object_into_mark_and_body():
    cfg = resolve_config(SMALL)
    looks, backgrounds = design(cfg)
    marks = bodies = 0
    for index in range(6):
        _, mask, objects, parts = render_image(cfg, looks, backgrounds, index)
        assert set(np.unique(parts)) <= {0, 1, 2, 255}
        np.testing.assert_array_equal(parts == 255, mask == 255)
        np.testing.assert_array_equal(parts == 0, mask == 0)
        for obj in objects:
            shown = parts[obj.mask & (mask != 255)]
            marks, bodies = marks + int((shown == 2).sum()), bodies + int((shown == 1).sum())
    assert 0.02 < marks / (marks + bodies) < 0.4  # the mark is a small part of each object


def test_the_voc_layout_has_part_maps_that_only_the_diagnostics_read(tiny_dataset):
    from vwe.data.voc import VocLayout

    layout = VocLayout(tiny_dataset)
    name = layout.read_split("val")[0]
    parts = layout.read_parts(name)
    assert parts is not None and parts.shape == layout.read_mask(name).shape
    assert (tiny_dataset / "SegmentationPart" / f"{name}.png").is_file()
