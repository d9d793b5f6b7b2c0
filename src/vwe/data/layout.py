"""What every dataset layout (VOC, folder, COCO) shares on top of its own paths and labels: the
class count, mask reading, and labels per split. A layout supplies `class_names`,
`read_split`, `image_path`, `mask_path` and `labels_for` (docs/formats.md#datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vwe.data.io import image_size, read_mask_file, read_text_file


def read_name_list(path: Path) -> list[str]:
    """The first word of every non-empty line: the split lists of every layout."""
    return [line.split()[0] for line in read_text_file(path, "split list").splitlines()
            if line.strip()]


class DatasetLayout:
    """The shared half of a layout; subclasses give names, paths and labels."""

    class_names: list[str]

    def read_split(self, split: str) -> list[str]:
        raise NotImplementedError

    def image_path(self, name: str) -> Path:
        raise NotImplementedError

    def mask_path(self, name: str) -> Path:
        raise NotImplementedError

    def labels_for(self, names: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def has_masks(self, names: list[str]) -> bool:
        raise NotImplementedError

    def masked_names(self, names: list[str]) -> list[str]:
        """The listed images that have a mask file, in list order (none without masks)."""
        if not self.has_masks(names):
            return []
        return [name for name in names if self.mask_path(name).is_file()]

    @property
    def num_classes(self) -> int:
        """Foreground classes (background excluded)."""
        return len(self.class_names)

    def read_mask(self, name: str, num_classes: int | None = None,
                  image_size: tuple[int, int] | None = None) -> np.ndarray:
        """A (H, W) uint8 mask with ids checked to lie in {0..C, 255} and, given it, its size."""
        limit = self.num_classes if num_classes is None else num_classes
        return read_mask_file(self.mask_path(name), limit, self.image_path(name), image_size)

    def read_checked_mask(self, name: str) -> np.ndarray:
        """The mask, checked against its image's size: a mask of another size is the mask's
        fault, not the CAMs' or predictions'."""
        return self.read_mask(name, image_size=image_size(self.image_path(name)))

    def read_parts(self, name: str) -> np.ndarray | None:
        """The generator's part map (docs/synthetic.md#part-masks); None in formats without."""
        return None

    def image_labels(self, split: str) -> dict[str, np.ndarray]:
        """Multi-hot labels of every image in a split, keyed by name."""
        return self.labels_for(self.read_split(split))

    def split_with_labels(self, split: str) -> tuple[list[str], dict[str, np.ndarray]]:
        """A split's names, in list order, and their multi-hot labels."""
        names = self.read_split(split)
        return names, self.labels_for(names)
