"""File I/O: atomic writes, palette PNGs, npz without pickles, clear errors on bad files."""

import json

import numpy as np
import pytest
from PIL import Image

from vwe.data.io import (
    atomic_path,
    load_npz,
    read_image,
    read_json,
    read_label_png,
    save_label_png,
    save_npz,
    voc_palette,
    write_json_atomic,
    write_text_atomic,
)
from vwe.errors import VweError


def test_atomic_write_leaves_only_the_target(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "hello")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_failure_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_temp_name_is_in_the_same_folder_with_the_suffix(tmp_path):
    with atomic_path(tmp_path / "sub" / "x.png") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.suffix == ".png"
        tmp.write_bytes(b"1")
    assert (tmp_path / "sub" / "x.png").read_bytes() == b"1"


def test_json_round_trip_and_bad_json(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2]}
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(VweError, match="b.json"):
        read_json(tmp_path / "b.json")


def test_voc_palette_known_colours():
    palette = voc_palette()
    # Entries from the published VOC colour map.
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]
    assert palette[20].tolist() == [0, 64, 128]
    assert palette[255].tolist() == [224, 224, 192]


def test_palette_png_round_trip(tmp_path):
    label = np.array([[0, 1, 2], [20, 255, 7]], dtype=np.uint8)
    save_label_png(tmp_path / "m.png", label)
    image = Image.open(tmp_path / "m.png")
    assert image.mode == "P"
    assert np.array_equal(read_label_png(tmp_path / "m.png"), label)
    rgb = np.asarray(image.convert("RGB"))
    assert rgb[0, 1].tolist() == [128, 0, 0] and rgb[1, 1].tolist() == [224, 224, 192]


def test_grey_png_reads_grey_values(tmp_path):
    label = np.array([[0, 3], [255, 12]], dtype=np.uint8)
    Image.fromarray(label).save(tmp_path / "g.png")
    assert np.array_equal(read_label_png(tmp_path / "g.png"), label)


def test_rgb_mask_is_refused(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(VweError, match="rgb.png"):
        read_label_png(tmp_path / "rgb.png")


def test_read_image_rgb_and_errors(tmp_path):
    pixels = np.zeros((5, 7, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    Image.fromarray(pixels).save(tmp_path / "ok.png")
    image = read_image(tmp_path / "ok.png")
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8 and image[0, 0, 0] == 200
    with pytest.raises(VweError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(VweError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(VweError, match="junk.jpg"):
        read_image(tmp_path / "junk.jpg")


def test_npz_round_trip(tmp_path):
    arrays = {"cam": np.arange(6, dtype=np.float32).reshape(2, 3), "keys": np.array([0, 4])}
    save_npz(tmp_path / "x.npz", **arrays)
    loaded = load_npz(tmp_path / "x.npz")
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        assert np.array_equal(loaded[key], value) and loaded[key].dtype == value.dtype
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_npz_refuses_objects_and_reports_corrupt_files(tmp_path):
    with pytest.raises(TypeError):
        save_npz(tmp_path / "o.npz", bad=np.array([{"a": 1}], dtype=object))
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(VweError, match="c.npz"):
        load_npz(tmp_path / "c.npz")
    with pytest.raises(VweError, match="none.npz"):
        load_npz(tmp_path / "none.npz")


def test_npz_with_pickled_object_is_not_unpickled(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, bad=np.array([{"a": 1}], dtype=object))  # written by someone else
    with pytest.raises(VweError, match="p.npz"):
        load_npz(path)


def test_read_label_map_checks_size_and_ids(tmp_path):
    from vwe.data.io import read_label_map

    label = np.array([[0, 1, 255], [2, 2, 0]], dtype=np.uint8)
    save_label_png(tmp_path / "a.png", label)
    np.testing.assert_array_equal(read_label_map(tmp_path / "a.png", (2, 3), 3, "label", "x",
                                                 ignore_as=0), np.where(label == 255, 0, label))
    with pytest.raises(VweError, match=r"prediction .*a.png is 2x3 but its image is 3x3; fix"):
        read_label_map(tmp_path / "a.png", (3, 3), 3, "prediction", "fix")
    with pytest.raises(VweError, match="holds id 255, outside 0..2"):
        read_label_map(tmp_path / "a.png", (2, 3), 3, "prediction", "fix")


@pytest.mark.parametrize("mode, value, want", [
    ("I;16", 65535, 255), ("I;16", 32768, 128), ("I", 65535, 255), ("I", 200, 200),
    ("F", 0.5, 128), ("F", 1.0, 255), ("L", 77, 77)])
def test_wide_and_grey_images_become_scaled_rgb(tmp_path, mode, value, want):
    from vwe.data.io import read_image

    pixels = np.full((3, 4), value, dtype={"I;16": np.uint16, "I": np.int32,
                                           "F": np.float32, "L": np.uint8}[mode])
    image = Image.fromarray(pixels)
    assert image.mode == mode
    path = tmp_path / ("img.tif" if mode in ("I", "F") else "img.png")
    image.save(path)
    rgb = read_image(path)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8 and (rgb == want).all()


def test_a_16_bit_png_named_jpg_is_not_white(tmp_path):
    from vwe.data.io import read_image

    ramp = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    path = tmp_path / "scan.jpg"  # a 16-bit PNG with the wrong extension
    Image.fromarray(ramp).save(path, format="PNG")
    grey = read_image(path)[..., 0]
    np.testing.assert_array_equal(grey, np.rint(ramp.astype(float) * 255 / 65535).astype(np.uint8))


@pytest.mark.parametrize("mode", ["LA", "P", "RGBA", "CMYK"])
def test_other_modes_become_rgb(tmp_path, mode):
    from vwe.data.io import read_image

    image = Image.new(mode, (5, 2))
    image.save(tmp_path / "x.tif" if mode == "CMYK" else tmp_path / "x.png")
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    assert read_image(path).shape == (2, 5, 3)


def test_multi_frame_images_are_refused(tmp_path):
    from vwe.data.io import read_image

    frames = [Image.new("L", (4, 4), v) for v in (0, 255)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(VweError, match="anim.gif has 2 frames"):
        read_image(tmp_path / "anim.gif")


def test_non_finite_arrays_are_refused(tmp_path):
    from vwe.data.io import check_finite

    with pytest.raises(VweError, match="c.npz holds NaN or Inf values; fix it"):
        check_finite(np.array([1.0, np.nan]), tmp_path / "c.npz", "CAM file", "fix it")
    with pytest.raises(VweError, match="holds int64 values, not floats"):
        check_finite(np.array([1, 2]), tmp_path / "c.npz", "CAM file", "fix it")
