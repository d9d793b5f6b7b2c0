"""File I/O for the pipeline: images, palette PNGs, npz arrays, JSON/text, all written atomically.

Every writer goes through `atomic_path`: the data lands under a temporary name in the target's
folder and is renamed over the target only once complete, so a crash never leaves a partial file
that a resumed run would mistake for a finished one. Nothing here ever unpickles.
"""

from __future__ import annotations

import functools
import io
import json
import os
import secrets
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vwe.errors import VweError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix so that writers which pick a format from the extension still work.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def ensure_writable_dir(path: str | Path, key: str) -> Path:
    """Create `path` and prove it takes a file, before any work; VweError naming `key` if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise VweError(f"cannot write to output folder {path} ({err.strerror or err}); fix its "
                       f"permissions or set {key} to a writable folder") from None
    return path


def read_text_file(path: str | Path, what: str) -> str:
    """The one reader of users' text files (lists, tags, classes, configs, JSON): UTF-8 with or
    without the byte-order mark that Excel's "CSV UTF-8" writes; anything else is a VweError
    naming the file, the first bad byte and the fix. `what` says what the file is for."""
    path = Path(path)
    if path.is_dir():
        raise VweError(f"{what} {path} is a folder; pass the file itself")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise VweError(f"{what} {path} not found") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise VweError(f"{what} {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} on line "
                       f"{line}); save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)") from None


def user_cache_dir() -> Path:
    """vwe's per-user cache (`$XDG_CACHE_HOME/vwe`, else `~/.cache/vwe`): shared by every run
    and working directory, never the current folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vwe"


def file_key(path: Path) -> tuple[int, int] | Path:
    """What makes two paths one file: device and inode when it exists (links), else the
    resolved path."""
    try:
        stat = path.stat()
        return (stat.st_dev, stat.st_ino)
    except OSError:
        return path.resolve()


def refuse_overwriting_inputs(outputs: Iterable[Path], inputs: Iterable[Path],
                              out_key: str, in_key: str) -> None:
    """The one rule for user-named outputs: none may be one of the command's inputs.

    `out_key`/`in_key` name the arguments (`OUT`, `CHECKPOINT`, `--out`) so the error says
    which one to change.
    """
    read = {file_key(Path(source)): Path(source) for source in inputs}
    for out in outputs:
        source = read.get(file_key(Path(out)))
        if source is not None:
            raise VweError(f"{out_key} would write {out}, which is the {in_key} {source} this "
                           f"command reads; choose another {out_key}")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write raw bytes atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write JSON atomically (plain data only: the pipeline's non-pickle metadata format)."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; VweError naming the file when missing or malformed."""
    path = Path(path)
    try:
        return json.loads(read_text_file(path, "JSON file"))
    except VweError:
        if not path.exists():
            raise VweError(f"{path} not found; run the stage that writes it first") from None
        raise
    except json.JSONDecodeError as err:
        raise VweError(f"{path} is not valid JSON ({err}); delete it and rerun") from None


def save_npz(path: str | Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Save arrays as an npz (deflated when `compressed`), atomically; object arrays are refused
    (they pickle)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array '{key}' has dtype object, which npz can only store by pickling")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an npz file (no pickles); VweError naming the file if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise VweError(f"{path} not found; run the stage that writes it first")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise VweError(f"{path} is corrupt ({err}); delete it and rerun the stage") from None


def voc_palette(num_entries: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (uint8, (num_entries, 3)): class i's colour from i's bits."""
    return np.frombuffer(_voc_palette_bytes(num_entries), dtype=np.uint8).reshape(-1, 3).copy()


@functools.lru_cache(maxsize=4)
def _voc_palette_bytes(num_entries: int) -> bytes:
    palette = np.zeros((num_entries, 3), dtype=np.uint8)
    for index in range(num_entries):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (red, green, blue)
    return palette.tobytes()


def encode_label_png(label: np.ndarray) -> bytes:
    """A uint8 label map as palette-PNG bytes (VOC colours), for writing the same mask twice."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise TypeError(f"label must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    image = Image.fromarray(label)
    image.putpalette(_voc_palette_bytes(256))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write a label map as a palette PNG with the VOC colours, atomically."""
    write_bytes_atomic(path, encode_label_png(label))


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a label PNG as uint8 ids: palette indices for P images, grey values for L images."""
    path = Path(path)
    image = _open_fully(path, "label mask")
    if image.mode not in ("P", "L"):
        raise VweError(
            f"label mask {path} has mode {image.mode}; masks must be palette (P) or grey (L) "
            "PNGs holding class ids"
        )
    return np.asarray(image, dtype=np.uint8).copy()


def read_mask_file(path: Path, num_classes: int, image_path: Path,
                   image_size: tuple[int, int] | None = None) -> np.ndarray:
    """A ground-truth mask (H, W) uint8 with ids checked to lie in {0..num_classes, 255} and,
    given it, its size checked against its image's: the one mask reader of every layout."""
    mask = read_label_png(path)
    bad = np.unique(mask[(mask > num_classes) & (mask != 255)])
    if bad.size:
        raise VweError(f"mask {path} holds class id {int(bad[0])}, outside 0..{num_classes} and "
                       f"255; fix the mask or the class list ({num_classes} classes: "
                       "classes.txt / data.classes)")
    if image_size is not None and tuple(mask.shape) != tuple(image_size):
        raise VweError(f"mask {path} is {mask.shape[0]}x{mask.shape[1]} but image {image_path} "
                       f"is {image_size[0]}x{image_size[1]}; they must be the same size")
    return mask


def read_label_map(path: str | Path, shape: tuple[int, ...], num_classes: int, what: str,
                   fix: str, ignore_as: int | None = None) -> np.ndarray:
    """A label PNG (a prediction, a pseudo label) checked against its image's (H, W) and the
    class ids 0..num_classes-1; with `ignore_as`, 255 is first mapped to that id."""
    path = Path(path)
    label = read_label_png(path)
    if label.shape != tuple(shape[:2]):
        raise VweError(f"{what} {path} is {label.shape[0]}x{label.shape[1]} but its image is "
                       f"{shape[0]}x{shape[1]}; {fix}")
    if ignore_as is not None:
        label = np.where(label == 255, np.uint8(ignore_as), label)
    if label.size and int(label.max()) >= num_classes:
        raise VweError(f"{what} {path} holds id {int(label.max())}, outside "
                       f"0..{num_classes - 1}; it was made for another dataset")
    return label


def too_large(path: Path, what: str) -> VweError:
    """Pillow refuses images above 2x its MAX_IMAGE_PIXELS (decompression bombs): not corrupt."""
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
    return VweError(f"{what} {path} has more than {limit:.0f} megapixels, more than Pillow "
                    "decodes safely; downscale it (the networks see a few hundred pixels a side)")


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from the image header, without decoding the pixels."""
    path = Path(path)
    if not path.is_file():
        raise VweError(f"image {path} not found; restore it or remove its name from the list")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise too_large(path, "image") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise VweError(f"image {path} cannot be read ({err}); re-download it") from None
    return height, width


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, decoding it fully so truncated files fail here.

    Every mode Pillow reads becomes 8-bit RGB: 16-bit and 32-bit integer images are scaled
    (65535 → 255, not clipped to white), float images in [0, 1] scaled by 255; palette, alpha
    and CMYK images through Pillow's conversion. EXIF orientation is not applied: masks, CAMs
    and labels live on the stored pixel grid, as VOC's do (docs/formats.md#images). Animated or
    multi-frame files are refused.
    """
    path = Path(path)
    image = _open_fully(path, "image")
    if getattr(image, "n_frames", 1) > 1:
        raise VweError(f"image {path} has {image.n_frames} frames (animated or multi-page); save "
                       "the frame to use as a .jpg or .png")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_rgb(np.asarray(image), image.mode)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _wide_to_rgb(pixels: np.ndarray, mode: str) -> np.ndarray:
    """A single-channel 16/32-bit or float image as 8-bit grey RGB, scaled, never clipped."""
    values = pixels.astype(np.float64)
    if mode == "F":
        top = 1.0 if np.nanmax(values, initial=0.0) <= 1.0 else 255.0
        scale = 255.0 / top
    elif mode.startswith("I;16") or np.max(values, initial=0) > 255:
        scale = 255.0 / 65535.0
    else:
        scale = 1.0
    grey = np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def check_finite(array: np.ndarray, path: Path, what: str, fix: str) -> np.ndarray:
    """A stored float array (CAMs, walks) refused when it holds NaN/Inf or is not a float."""
    if array.dtype.kind != "f":
        raise VweError(f"{what} {path} holds {array.dtype} values, not floats; {fix}")
    if not np.isfinite(array).all():
        raise VweError(f"{what} {path} holds NaN or Inf values; {fix}")
    return array


def _open_fully(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image file, turning every failure into a VweError naming it."""
    if not path.is_file():
        raise VweError(f"{what} {path} not found; restore it or remove its name from the list")
    try:
        image = Image.open(path)
        image.load()
    except Image.DecompressionBombError:
        raise too_large(path, what) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise VweError(
            f"{what} {path} is corrupt or truncated ({err}); re-download it or remove its name "
            "from the list"
        ) from None
    return image
