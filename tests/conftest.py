"""Shared fixtures: the tiny generated dataset (once per session) and hand-made VOC folders."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vwe.config import SyntheticConfig
from vwe.data.folder import copy_as_folder
from vwe.data.io import save_label_png
from vwe.data.synthetic import generate_dataset
from vwe.data.voc import VocLayout


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny generated dataset (VOC layout, 8 classes, 48/16/16/8 images, <1 s)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    generate_dataset(root, SyntheticConfig(size="tiny", seed=0))
    return root


def write_xml(path: Path, objects: list[str]) -> None:
    """VOC XML with one <object> per entry; "cat:difficult" marks a difficult object."""
    body = ""
    for entry in objects:
        name, _, flag = entry.partition(":")
        body += (f"<object><name>{name}</name><difficult>{int(flag == 'difficult')}</difficult>"
                 "<part><name>head</name></part></object>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>x.jpg</filename>{body}</annotation>")


def make_voc(root: Path, images: dict[str, list[str]], lists: dict[str, list[str]],
             classes: list[str] | None = None, size: tuple[int, int] = (10, 12)) -> Path:
    """images: name → object class names (XML order); masks get class 1 at the centre."""
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    if classes is not None:
        (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for name, objects in images.items():
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg", quality=90)
        mask = np.zeros(size, dtype=np.uint8)
        mask[2:5, 3:6] = 1
        mask[0, :] = 255
        save_label_png(root / "SegmentationClass" / f"{name}.png", mask)
        write_xml(root / "Annotations" / f"{name}.xml", objects)
    for split, names in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(f"{n}\n" for n in names))
    return root


@pytest.fixture()
def fake_voc() -> Callable[..., Path]:
    """`make_voc(root, images, lists, classes=None, size=(10, 12))`: a hand-made VOC folder."""
    return make_voc


@pytest.fixture(scope="session")
def single_torch_thread():
    """Tiny tensors: two torch threads on shared, busy cores are far slower than one (once
    requested, the rest of the session keeps one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_as_folder(voc_root, out, splits=("train_aug", "train", "val"), as_json=False):
    """The tiny VOC-layout dataset rewritten as a folder: images/, tags, masks/, splits/
    (through the package's writer, `data.folder.copy_as_folder`)."""
    voc = VocLayout(voc_root)
    images, masks = out / "images", out / "masks"
    names = sorted({n for split in ("train_aug", "val", "test") for n in voc.read_split(split)})
    copy_as_folder(voc, images, masks, names, {s: voc.read_split(s) for s in splits}, as_json)
    return images, masks


@pytest.fixture()
def voc_to_folder():
    """`voc_to_folder(voc_root, out, splits=…, as_json=False)`: the dataset as a folder
    (images/ with tags and split lists, masks/); returns (images, masks)."""
    return write_as_folder

