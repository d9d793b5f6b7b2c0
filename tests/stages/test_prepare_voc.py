"""prepare-voc on a hand-made VOC + SBD layout: train_aug by hand, missing files reported."""

import json

import pytest

from vwe.config import load_config
from vwe.data.voc import prepare_voc
from vwe.errors import VweError
from vwe.stages import prepare_voc as prepare_voc_stage

IMAGES = {f"2007_00000{i}": ["cat"] for i in range(8)}


def sbd_lists(root, train, val):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (root / "val.txt").write_text("".join(f"{n}\n" for n in val))
    return root


@pytest.fixture()
def voc_root(tmp_path, fake_voc):
    return fake_voc(tmp_path / "voc", IMAGES, {"train": ["2007_000000", "2007_000001"],
                                               "val": ["2007_000002", "2007_000003"]})


def test_train_aug_is_sbd_and_voc_train_minus_voc_val(voc_root, tmp_path):
    sbd = sbd_lists(tmp_path / "sbd", ["2007_000004", "2007_000002", "2007_000005"],
                    ["2007_000006", "2007_000003", "2007_000000"])
    (voc_root / "JPEGImages" / "2007_000005.jpg").unlink()
    report = prepare_voc(voc_root, sbd)
    # SBD {4, 2, 5} ∪ {6, 3, 0} ∪ VOC train {0, 1} − VOC val {2, 3} = {0, 1, 4, 5, 6}
    expected = ["2007_000000", "2007_000001", "2007_000004", "2007_000005", "2007_000006"]
    listed = (voc_root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    assert listed == expected and report["train_aug"] == 5
    assert (report["voc_train"], report["voc_val"], report["sbd"]) == (2, 2, 6)
    assert report["missing_jpeg"] == ["2007_000005"] and report["num_missing_mask"] == 0
    labels = json.loads((voc_root / "ImageSets" / "Segmentation" / "cls_labels.json").read_text())
    assert set(labels["labels"]) == set(expected) | {"2007_000002", "2007_000003"}
    assert labels["labels"]["2007_000004"]["labels"] == [7]  # cat


def test_existing_train_aug_is_reused_and_cleaned(voc_root):
    lists = voc_root / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("2007_000007\n2007_000002\n")
    report = prepare_voc(voc_root)
    assert (lists / "train_aug.txt").read_text().split() == \
        ["2007_000000", "2007_000001", "2007_000007"]
    assert report["sbd_source"].endswith("train_aug.txt")


def test_missing_sbd_lists_name_the_fix(voc_root, tmp_path):
    with pytest.raises(VweError, match="sbd_root"):
        prepare_voc(voc_root)
    (tmp_path / "sbd").mkdir()
    with pytest.raises(VweError, match=r"train\.txt"):
        prepare_voc(voc_root, tmp_path / "sbd")


def test_stage_reads_the_config(voc_root, tmp_path):
    sbd = sbd_lists(tmp_path / "sbd", ["2007_000004"], [])
    cfg = load_config(None, [f"data.root={voc_root}", f"data.sbd_root={sbd}"])
    report = prepare_voc_stage.run(cfg)
    assert report["train_aug"] == 3 and report["num_missing_xml"] == 0


def test_rerun_rebuilds_labels_of_an_xml_edited_in_place(voc_root, tmp_path):
    sbd = sbd_lists(tmp_path / "sbd", ["2007_000004"], ["2007_000005"])
    prepare_voc(voc_root, sbd)
    cache = voc_root / "ImageSets" / "Segmentation" / "cls_labels.json"
    xml = voc_root / "Annotations" / "2007_000004.xml"
    xml.write_text("<annotation><object><name>dog</name></object>"
                   "<object><name>cat</name></object></annotation>")
    prepare_voc(voc_root, sbd)
    assert json.loads(cache.read_text())["labels"]["2007_000004"]["labels"] == [7, 11]


def test_an_empty_train_aug_is_refused_and_nothing_written(tmp_path, fake_voc):
    root = fake_voc(tmp_path / "voc", IMAGES, {"train": ["2007_000000"],
                                              "val": ["2007_000000", "2007_000001"]})
    sbd = sbd_lists(tmp_path / "sbd", ["2007_000001"], ["2007_000000"])
    with pytest.raises(VweError, match="train_aug would be empty"):
        prepare_voc(root, sbd)
    assert not (root / "ImageSets" / "Segmentation" / "train_aug.txt").exists()
