"""make-dataset: generates once, keeps a dataset with the same config, regenerates on change."""

import pytest

from vwe.config import load_config
from vwe.data.synthetic import resolve_config, split_names
from vwe.data.synthetic_writers import coco_name
from vwe.data.voc import VocLayout
from vwe.errors import VweError
from vwe.stages import make_dataset

SMALL = ["synthetic.size=tiny", "synthetic.num_train_aug=4", "synthetic.num_train=2",
         "synthetic.num_val=2", "synthetic.num_test=1"]


def config(root, *extra):
    return load_config(None, [f"data.root={root}", *SMALL, *extra])


def mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_generates_then_keeps_then_regenerates(tmp_path):
    root = tmp_path / "synthetic"
    first = make_dataset.run(config(root))
    assert first["generated"] and first["images"]["train_aug"] == 4
    assert VocLayout(root).read_split("val") == ["syn_000004", "syn_000005"]
    before = mtimes(root)
    again = make_dataset.run(config(root))
    assert not again["generated"] and again["images"] == first["images"]
    assert mtimes(root) == before  # nothing rewritten
    jpeg = root / "JPEGImages" / "syn_000000.jpg"
    old_bytes = jpeg.read_bytes()
    changed = make_dataset.run(config(root, "synthetic.seed=5"))
    assert changed["generated"] and jpeg.read_bytes() != old_bytes


def test_incomplete_dataset_is_regenerated(tmp_path):
    root = tmp_path / "synthetic"
    make_dataset.run(config(root))
    (root / "Annotations" / "syn_000001.xml").unlink()
    assert make_dataset.run(config(root))["generated"]
    assert (root / "Annotations" / "syn_000001.xml").is_file()


def test_refuses_to_write_into_another_dataset(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "2007_000032.jpg").write_bytes(b"x")
    with pytest.raises(VweError, match=str(tmp_path)):
        make_dataset.run(config(tmp_path))
    assert not (tmp_path / "ImageSets").exists()


@pytest.mark.parametrize("fmt, probe", [("coco", "train2014/COCO_train2014_000000000002.jpg"),
                                        ("folder", "syn_000001.jpg")])
def test_other_formats_are_kept_then_regenerated_when_incomplete(tmp_path, fmt, probe):
    root = tmp_path / "synthetic"
    assert make_dataset.run(config(root, f"synthetic.format={fmt}"))["generated"]
    assert not make_dataset.run(config(root, f"synthetic.format={fmt}"))["generated"]
    (root / probe).unlink()
    assert make_dataset.run(config(root, f"synthetic.format={fmt}"))["generated"]
    assert (root / probe).is_file()
    if fmt == "coco":  # the generator's train subset, in COCO names, beside prepare-coco's lists
        train = split_names(resolve_config(config(root).synthetic))["train"]
        listed = (root / "vwe_prepared" / "lists" / "train.txt").read_text().split()
        assert listed == [coco_name("train2014", int(name[4:])) for name in train]
