"""export-voc-test: the server archive's layout, PNG mode and palette; incomplete → no archive."""

import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from vwe.cli import main
from vwe.data.io import save_label_png, voc_palette
from vwe.data.voc import VocLayout

FOLDER = "results/VOC2012/Segmentation/comp6_test_cls"


@pytest.fixture()
def test_predictions(tiny_dataset, tmp_path):
    """crf/ predictions for the test split: image i is filled with class i % 9 (grey 'L' PNGs
    for odd i, so the export must re-encode them as palette PNGs)."""
    layout = VocLayout(tiny_dataset)
    folder = tmp_path / "run" / "seg" / "test" / "crf"
    folder.mkdir(parents=True)
    expected = {}
    for index, name in enumerate(layout.read_split("test")):
        width, height = Image.open(layout.image_path(name)).size
        label = np.full((height, width), index % 9, np.uint8)
        if index % 2:
            Image.fromarray(label, mode="L").save(folder / f"{name}.png")
        else:
            save_label_png(folder / f"{name}.png", label)
        expected[name] = label
    return tmp_path / "run", folder, expected


def test_archive_holds_every_test_image_as_palette_png(tiny_dataset, test_predictions):
    run_dir, _, expected = test_predictions
    assert main(["export-voc-test", f"data.root={tiny_dataset}", f"run_dir={run_dir}"]) == 0
    archive = run_dir / "voc_test_results.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        folders = {m.name for m in tar.getmembers() if m.isdir()}
    assert "results" in folders and FOLDER in folders
    assert sorted(files) == sorted(f"{FOLDER}/{name}.png" for name in expected)
    palette = voc_palette(256).reshape(-1).tolist()
    for name, label in expected.items():
        png = Image.open(io.BytesIO(files[f"{FOLDER}/{name}.png"]))
        assert png.mode == "P" and png.getpalette()[:768] == palette
        np.testing.assert_array_equal(np.asarray(png), label)
    assert palette[3:6] == [128, 0, 0]  # aeroplane red: the colours the server expects


def test_incomplete_or_wrong_size_predictions_write_no_archive(tiny_dataset, test_predictions,
                                                              capsys):
    run_dir, folder, expected = test_predictions
    args = ["export-voc-test", f"data.root={tiny_dataset}", f"run_dir={run_dir}"]
    names = sorted(expected)
    for name in names[:3]:
        (folder / f"{name}.png").unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "3 of 8 test images have no prediction" in err and names[0] in err
    assert "no archive written" in err and err.count("\n") == 1
    assert not (run_dir / "voc_test_results.tar.gz").exists()
    for name in names[:3]:
        save_label_png(folder / f"{name}.png", expected[name])
    save_label_png(folder / f"{names[5]}.png", expected[names[5]][:-2])
    assert main(args) == 2
    assert f"{names[5]}.png is" in capsys.readouterr().err
    assert not list(run_dir.glob("*.tar.gz")) and not list(run_dir.glob(".*tmp*"))


def test_unwritable_archive_folder(tiny_dataset, test_predictions, tmp_path, capsys):
    run_dir, _, _ = test_predictions
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["export-voc-test", f"data.root={tiny_dataset}", f"run_dir={run_dir}",
                 f"export.archive={blocker / 'out.tar.gz'}"]) == 2
    err = capsys.readouterr().err
    assert "cannot write to output folder" in err and "export.archive" in err
