"""prepare-coco on a hand-made COCO root: masks, lists and labels computed by hand; resuming,
redoing on a changed crowd mode; one line and nothing written for every bad input; a stage
refusing a missing or stale preparation."""

import json

import numpy as np
import pytest
from PIL import Image

from vwe.config import load_config
from vwe.data.coco import CocoLayout
from vwe.data.io import read_label_png
from vwe.errors import VweError
from vwe.stages import prepare_coco

CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 2, "name": "bicycle"}]  # ids with gaps
BOX = [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]  # polygon: rows 0-3, cols 0-3 (16 px)
SMALL = {"size": [4, 6], "counts": [9, 2, 2, 2, 9]}  # uncompressed RLE: rows 1-2, cols 2-3
CROWD = {"size": [4, 6], "counts": [20, 4]}  # column 5 (column-major counts)


def make_coco(root):
    """train2014: two annotated images and one without annotations; val2014: one image."""
    images = {
        "train2014": [("COCO_train2014_000000000001.jpg",
                       [(7, BOX, 16, 0), (2, SMALL, 4, 0)]),
                      ("COCO_train2014_000000000002.jpg", [(2, SMALL, 4, 0)]),
                      ("COCO_train2014_000000000003.jpg", [])],
        "val2014": [("COCO_val2014_000000000004.jpg", [(7, BOX, 16, 0), (2, CROWD, 4, 1)])],
    }
    next_id = 1
    for folder, entries in images.items():
        data = {"images": [], "annotations": [], "categories": CATEGORIES}
        (root / folder).mkdir(parents=True)
        for file_name, anns in entries:
            image_id = int(file_name[-8:-4])
            Image.fromarray(np.zeros((4, 6), np.uint8)).save(root / folder / file_name)  # grey
            data["images"].append({"id": image_id, "file_name": file_name, "height": 4,
                                   "width": 6})
            for category, segmentation, area, crowd in anns:
                data["annotations"].append({"id": next_id, "image_id": image_id,
                                            "category_id": category, "segmentation": segmentation,
                                            "area": area, "iscrowd": crowd})
                next_id += 1
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{folder}.json").write_text(json.dumps(data))
    return root


def config(root, *extra):
    return load_config(None, [f"data.root={root}", "data.num_workers=0", *extra])


@pytest.fixture()
def coco_root(tmp_path):
    return make_coco(tmp_path / "coco")


def test_masks_lists_and_labels_by_hand(coco_root):
    summary = prepare_coco.run(config(coco_root, "data.coco_crowd=ignore"))
    assert summary["images"] == {"train2014": 2, "val2014": 1} and summary["computed"] == 3
    layout = CocoLayout(coco_root, crowd="ignore")
    assert layout.class_names == ["bicycle", "dog"]  # id 2 → 1, id 7 → 2
    assert layout.read_split("train") == ["COCO_train2014_000000000001",
                                          "COCO_train2014_000000000002"]
    assert layout.read_split("val") == ["COCO_val2014_000000000004"]
    np.testing.assert_array_equal(layout.read_checked_mask("COCO_train2014_000000000001"),
                                  [[2, 2, 2, 2, 0, 0],
                                   [2, 2, 1, 1, 0, 0],
                                   [2, 2, 1, 1, 0, 0],
                                   [2, 2, 2, 2, 0, 0]])
    np.testing.assert_array_equal(layout.read_mask("COCO_val2014_000000000004"),
                                  [[2, 2, 2, 2, 0, 255]] * 4)
    labels = layout.image_labels("train")
    assert labels["COCO_train2014_000000000001"].tolist() == [1.0, 1.0]
    assert labels["COCO_train2014_000000000002"].tolist() == [1.0, 0.0]
    assert layout.labels_for(["COCO_val2014_000000000004"])[
        "COCO_val2014_000000000004"].tolist() == [1.0, 1.0]  # crowd counts as a label
    assert layout.image_path("COCO_val2014_000000000004") == \
        coco_root / "val2014" / "COCO_val2014_000000000004.jpg"


def test_resumes_and_redoes_a_changed_crowd_mode(coco_root):
    prepare_coco.run(config(coco_root))
    mask = coco_root / "vwe_prepared" / "masks" / "COCO_val2014_000000000004.png"
    assert read_label_png(mask)[0, 5] == 0  # crowd as background
    before = mask.stat().st_mtime_ns
    assert prepare_coco.run(config(coco_root))["computed"] == 0
    assert mask.stat().st_mtime_ns == before
    assert prepare_coco.run(config(coco_root, "data.coco_crowd=label"))["computed"] == 3
    assert read_label_png(mask)[0, 5] == 1  # crowd painted as its class, bicycle


def test_a_stage_refuses_missing_or_stale_preparation(coco_root):
    with pytest.raises(VweError, match="run `vwe prepare-coco`") as err:
        CocoLayout(coco_root)
    assert "not prepared" in str(err.value)
    prepare_coco.run(config(coco_root))
    with pytest.raises(VweError, match=r"stale \(data.coco_crowd: background → ignore\).*"
                                       "run `vwe prepare-coco`"):
        CocoLayout(coco_root, crowd="ignore")
    path = coco_root / "annotations" / "instances_val2014.json"
    path.write_text(path.read_text() + " ")
    with pytest.raises(VweError, match="input instances_val2014.json"):
        CocoLayout(coco_root)


@pytest.mark.parametrize("breakage, needle", [
    ("missing_images", "2 of 2 images listed in"),
    ("not_json", "instances_train2014.json are not valid JSON"),
    ("no_categories", "lack the list 'categories'"),
    ("no_file", "instances_val2014.json not found"),
])
def test_bad_input_is_one_line_and_writes_nothing(coco_root, breakage, needle):
    train_json = coco_root / "annotations" / "instances_train2014.json"
    if breakage == "missing_images":
        for name in ("1", "2"):
            (coco_root / "train2014" / f"COCO_train2014_00000000000{name}.jpg").unlink()
    elif breakage == "not_json":
        train_json.write_text('{"images": [')
    elif breakage == "no_categories":
        data = json.loads(train_json.read_text())
        del data["categories"]
        train_json.write_text(json.dumps(data))
    else:
        (coco_root / "annotations" / "instances_val2014.json").unlink()
    with pytest.raises(VweError) as err:
        prepare_coco.run(config(coco_root))
    assert needle in str(err.value) and "\n" not in str(err.value)
    if breakage == "missing_images":
        assert "the first " + str(coco_root / "train2014" / "COCO_train2014_000000000001.jpg") \
            in str(err.value)
    assert not (coco_root / "vwe_prepared").exists()
