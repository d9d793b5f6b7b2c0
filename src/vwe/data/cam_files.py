"""CAM files (`<run_dir>/cams/<name>.npz`) as the refinement stages read them, checked up front.

Before a stage writes anything it checks every listed image's CAM file: present, `keys` equal to
the image-level labels, and the map's size equal to the image's (full size for `high_res`, the
stride-4 grid for `cam`). Only the npz headers and the image headers are read, so the check costs
little even on train_aug; a bad file is one VweError naming it and the fix.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vwe.data.folder import FolderLayout
from vwe.data.io import check_finite, image_size, load_npz
from vwe.data.voc import VocLayout
from vwe.errors import VweError

REMAKE = "delete that file and rerun `vwe make-cam` (it makes only the missing files)"


def full_size(height: int, width: int) -> tuple[int, int]:
    """`high_res` is the image's size (docs/refinement.md#make-cam-output)."""
    return height, width


def stride4_size(height: int, width: int) -> tuple[int, int]:
    """`cam` is (⌈H/4⌉, ⌈W/4⌉), the grid of IRNet's edge map (docs/refinement.md#make-cam-output,
    docs/refinement.md#random-walk step 2)."""
    return (height + 3) // 4, (width + 3) // 4


def npz_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of one array of an npz file from its header; None when the array is absent."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                return tuple(np.lib.format.read_array_header_1_0(handle)[0])
            if version == (2, 0):
                return tuple(np.lib.format.read_array_header_2_0(handle)[0])
    except KeyError:
        return None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise VweError(f"CAM file {path} is corrupt ({err}); {REMAKE}") from None
    return tuple(load_npz(path)[key].shape)  # a newer header version: read the array itself


def read_keys(path: Path) -> np.ndarray:
    """The 0-based class indices stored in a CAM file."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "keys" not in npz.files:
                raise VweError(f"CAM file {path} has no 'keys' array; {REMAKE}")
            return np.asarray(npz["keys"]).reshape(-1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise VweError(f"CAM file {path} is corrupt ({err}); {REMAKE}") from None


def check_cam_files(layout: VocLayout | FolderLayout, cam_dir: Path, names: list[str],
                    labels: dict[str, np.ndarray], array: str,
                    size_of: Callable[[int, int], tuple[int, int]]) -> list[Path]:
    """Every listed image's CAM file, checked; VweError naming the first bad one."""
    paths = [cam_dir / f"{name}.npz" for name in names]
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise VweError(f"CAM file {missing[0]} not found ({len(missing)} of {len(paths)} missing);"
                       " run `vwe make-cam` with cam.split set to this list first (it resumes)")
    for name, path in zip(names, paths):
        keys = read_keys(path)
        expected = np.flatnonzero(labels[name])
        if keys.shape != expected.shape or not np.array_equal(keys, expected):
            raise VweError(f"CAM file {path} has keys {keys.tolist()} but the image labels of "
                           f"'{name}' ({layout.label_source(name)}) are {expected.tolist()}; "
                           f"{REMAKE}")
        shape = npz_shape(path, array)
        want = (len(keys), *size_of(*image_size(layout.image_path(name))))
        if shape is None:
            raise VweError(f"CAM file {path} has no '{array}' array; {REMAKE}")
        if shape != want:
            raise VweError(f"CAM file {path}: '{array}' has shape {shape} but image "
                           f"{layout.image_path(name)} needs {want}; {REMAKE}")
    return paths


def load_cam(path: Path, array: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys int64 (K,), maps float32 (K, h, w)) of one CAM file."""
    arrays = load_npz(path)
    maps = check_finite(np.asarray(arrays[array]), path, "CAM file", REMAKE)
    return np.asarray(arrays["keys"], dtype=np.int64).reshape(-1), maps.astype(np.float32)


def stored_cam_arrays(arrays: dict[str, np.ndarray], save_parts: bool, dtype: str
                      ) -> dict[str, np.ndarray]:
    """What a CAM file keeps of `multiscale_cams`' output: `keys`, the fused `cam` and
    `high_res` (what later stages read), the `_img` / `_word` parts only when asked, the maps
    in `dtype` (docs/formats.md#cam-files)."""
    kept = {}
    for key, value in arrays.items():
        if key.endswith(("_img", "_word")) and not save_parts:
            continue
        kept[key] = value.astype(dtype) if value.dtype.kind == "f" else value
    return kept
