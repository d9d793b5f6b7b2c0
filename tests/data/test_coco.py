"""The `coco` format: hand-computed painting (small on top, the three crowd modes, id gaps), and
the tiny generated dataset written as COCO equal to its VOC layout: labels, masks, images and
the CAM stage's scores."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vwe.cli import main
from vwe.config import DataConfig
from vwe.data.coco import (
    CocoLayout,
    InstanceMask,
    annotation_mask,
    contiguous_ids,
    semantic_mask,
)
from vwe.data.io import read_image
from vwe.data.synthetic_writers import coco_name
from vwe.data.voc import VocLayout, open_dataset
from vwe.errors import VweError


def rle(rows: list[str]) -> dict:
    """A compressed RLE of a hand-drawn mask ('#' = inside)."""
    pixels = np.array([[c == "#" for c in row] for row in rows], dtype=np.uint8)
    encoded = mask_utils.encode(np.asfortranarray(pixels))
    return {"size": encoded["size"], "counts": encoded["counts"].decode()}


BIG = rle(["####..", "####..", "####..", "####.."])  # 16 pixels
SMALL = rle(["......", "..###.", "..###.", "......"])  # 6 pixels, overlapping BIG
CROWD = rle(["......", "......", "...###", "...###"])  # 6 pixels, overlapping both


def test_small_objects_are_painted_on_top_whatever_the_file_order():
    instances = [InstanceMask(1, False, 16, BIG), InstanceMask(2, False, 6, SMALL)]
    want = np.array([[1, 1, 1, 1, 0, 0],
                     [1, 1, 2, 2, 2, 0],
                     [1, 1, 2, 2, 2, 0],
                     [1, 1, 1, 1, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(semantic_mask(4, 6, instances), want)
    np.testing.assert_array_equal(semantic_mask(4, 6, instances[::-1]), want)


@pytest.mark.parametrize("crowd, want", [
    ("background", [[1, 1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 0, 0]]),
    ("ignore", [[1, 1, 1, 1, 0, 0],
                [1, 1, 1, 1, 0, 0],
                [1, 1, 1, 255, 255, 255],
                [1, 1, 1, 255, 255, 255]]),
    ("label", [[1, 1, 1, 1, 0, 0],
               [1, 1, 1, 1, 0, 0],
               [1, 1, 1, 3, 3, 3],
               [1, 1, 1, 3, 3, 3]]),
])
def test_crowd_regions_in_each_mode(crowd, want):
    instances = [InstanceMask(1, False, 16, BIG), InstanceMask(3, True, 6, CROWD)]
    np.testing.assert_array_equal(semantic_mask(4, 6, instances, crowd),
                                  np.array(want, dtype=np.uint8))


def test_unknown_crowd_mode_is_refused():
    with pytest.raises(VweError, match="data.coco_crowd=drop"):
        semantic_mask(4, 6, [], "drop")


def test_category_ids_with_gaps_become_1_to_k_in_id_order():
    categories = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"},
                  {"id": 13, "name": "stop sign"}, {"id": 2, "name": "bicycle"}]
    names, label_of = contiguous_ids(categories)
    assert names == ["person", "bicycle", "stop sign", "toothbrush"]
    assert label_of == {1: 1, 2: 2, 13: 3, 90: 4}


def test_polygons_and_uncompressed_rle_decode_as_pycocotools_ann_to_mask():
    polygon = [[1.0, 0.5, 4.5, 0.5, 4.5, 2.5, 1.0, 2.5]]
    uncompressed = {"size": [4, 6], "counts": [5, 3, 1, 3, 12]}
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "height": 4, "width": 6}], "categories": [],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                                     "segmentation": polygon},
                                    {"id": 2, "image_id": 1, "category_id": 1,
                                     "segmentation": uncompressed}]}
    coco.createIndex()
    for ann_id, segmentation in ((1, polygon), (2, uncompressed)):
        want = coco.annToMask(coco.anns[ann_id]).astype(bool)
        assert want.any()
        np.testing.assert_array_equal(annotation_mask(segmentation, 4, 6), want)


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """The tiny generated dataset in COCO format, prepared with crowd=ignore."""
    root = tmp_path_factory.mktemp("tiny_coco") / "coco"
    run_dir = root.parent / "run"
    common = [f"data.root={root}", f"run_dir={run_dir}", "synthetic.size=tiny", "synthetic.seed=0"]
    assert main(["make-dataset", *common, "synthetic.format=coco"]) == 0
    assert main(["prepare-coco", *common, "data.coco_crowd=ignore", "data.num_workers=0"]) == 0
    return root


def voc_to_coco_names(voc_root, split):
    voc = VocLayout(voc_root)
    index = {n: i for i, n in enumerate(voc.read_split("train_aug") + voc.read_split("val")
                                        + voc.read_split("test"))}
    folder = "val2014" if split == "val" else "train2014"
    return voc.read_split(split), [coco_name(folder, index[n]) for n in voc.read_split(split)]


def test_same_labels_masks_and_images_as_the_voc_layout(tiny_dataset, tiny_coco):
    coco = open_dataset(DataConfig(format="coco", root=str(tiny_coco), coco_crowd="ignore"))
    voc = VocLayout(tiny_dataset)
    assert isinstance(coco, CocoLayout) and coco.class_names == voc.class_names
    for split in ("train_aug", "train", "val"):
        voc_names, coco_names = voc_to_coco_names(tiny_dataset, split)
        names, labels = coco.split_with_labels(split)
        assert names == coco_names
        want = voc.image_labels(split)
        assert all(np.array_equal(labels[c], want[v]) for v, c in zip(voc_names, names))
        for v, c in zip(voc_names, names):
            np.testing.assert_array_equal(coco.read_checked_mask(c), voc.read_mask(v))
    v, c = voc.read_split("val")[0], coco.read_split("val")[0]
    np.testing.assert_array_equal(read_image(coco.image_path(c)), read_image(voc.image_path(v)))
    assert coco.image_path(c).read_bytes() == voc.image_path(v).read_bytes()


def test_crowd_as_background_turns_only_the_band_to_zero(tiny_dataset, tiny_coco, tmp_path):
    prepared = tmp_path / "prepared"
    assert main(["prepare-coco", f"data.root={tiny_coco}", f"data.coco_prepared={prepared}",
                 f"run_dir={tmp_path / 'run'}", "data.num_workers=0"]) == 0
    coco = CocoLayout(tiny_coco, str(prepared))
    voc = VocLayout(tiny_dataset)
    voc_names, coco_names = voc_to_coco_names(tiny_dataset, "val")
    for v, c in zip(voc_names[:4], coco_names[:4]):
        want = voc.read_mask(v)
        want[want == 255] = 0
        np.testing.assert_array_equal(coco.read_mask(c), want)


def test_the_lists_json_and_the_users_extra_list(tiny_coco):
    coco = CocoLayout(tiny_coco, crowd="ignore")
    assert coco.read_split("train_aug") == coco.read_split("train2014")
    assert len(coco.read_split("train")) == 16 and len(coco.read_split("val")) == 16
    part = coco.list_dir / "val_part.txt"
    part.write_text("".join(f"{n}\n" for n in coco.read_split("val")[:3]))
    try:
        assert coco.read_split("val_part") == coco.read_split("val")[:3]
    finally:
        part.unlink()
    with pytest.raises(VweError, match="COCO splits are train"):
        coco.read_split("test")
    data = json.loads((tiny_coco / "annotations" / "instances_val2014.json").read_text())
    assert {a["iscrowd"] for a in data["annotations"]} == {0, 1}
    assert sorted(c["id"] for c in data["categories"]) == [2, 4, 6, 8, 10, 12, 14, 16]


def test_the_cam_stage_on_the_coco_format_equals_voc(tiny_dataset, tiny_coco, tmp_path,
                                                     single_torch_thread):
    common = ["data.num_workers=0", "device=cpu", "model.backbone=resnet_tiny",
              "model.pretrained=none", "model.num_words=8", "train_cam.batch_size=4",
              "train_cam.max_steps=4", "train_cam.crop_size=64", "cam.split=val",
              "cam.scales=[1.0]", "eval_cam.split=val", "eval_cam.sweep=false"]
    runs = {"voc": [f"data.root={tiny_dataset}"],
            "coco": ["data.format=coco", f"data.root={tiny_coco}", "data.coco_crowd=ignore"]}
    for kind, data in runs.items():
        for command in ("train-cam", "make-cam", "eval-cam"):
            assert main([command, *common, *data, f"run_dir={tmp_path / kind}"]) == 0, command
    scores = {kind: json.loads((tmp_path / kind / "eval_cam.json").read_text())
              for kind in runs}
    assert scores["voc"]["variants"]["fused"]["at_bkg_score"]["miou"] > 0
    assert scores["coco"]["variants"] == scores["voc"]["variants"]
