"""The DeepLab MSC loss of one global batch, however it is split over ranks and micro-batches.

The recipes average each CE term over the pixels of the batch
(docs/segmentation.md#msc, docs/segmentation.md#loss-and-lr-formulas). Split over W ranks × A
accumulation steps, per-split means would weight pixels unequally (crop padding is ignored, so
splits hold different pixel counts). Here each term divides by the pixel counts of the whole global
batch, summed over ranks beforehand, so the summed gradient equals the one of the unsplit batch:
batch size means the global batch. `msc_loss` is the loss of one batch on its own (one split).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vwe.config import seg_recipe
from vwe.errors import VweError
from vwe.models.deeplab import MSC, resize_labels

LOSS_TYPES = ("ce", "balanced_ce")


def check_loss_type(loss: str) -> str:
    """The one check of `train_seg.loss`: VweError naming the choices."""
    if loss not in LOSS_TYPES:
        raise VweError(f"train_seg.loss={loss} is unknown; choose one of {', '.join(LOSS_TYPES)}")
    return loss


def target_sizes(recipe: str, output_sizes: Sequence[tuple[int, int]],
                 input_size: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Where each MSC term is scored: KZ at each output's own size, RL at L1's size
    (docs/segmentation.md#msc); every term at `input_size` when given
    (docs/segmentation.md#loss-resolution)."""
    if input_size is not None:
        return [tuple(input_size)] * len(output_sizes)
    if recipe == "vwe_author":
        return [tuple(output_sizes[0])] * len(output_sizes)
    return [tuple(size) for size in output_sizes]


@torch.no_grad()
def msc_output_sizes(model: MSC, crop_size: int, device: torch.device) -> list[tuple[int, int]]:
    """(h, w) of every MSC training output for a crop, from one probe without touching BN stats."""
    base_was_training, msc_was_training = model.base.training, model.training
    model.base.eval()  # running statistics only: the probe must not update batch-norm buffers
    model.training = True  # the wrapper alone in training mode: it returns every output
    try:
        outputs = model(torch.zeros(1, 3, crop_size, crop_size, device=device))
    finally:
        model.base.train(base_was_training)
        model.training = msc_was_training
    return [tuple(out.shape[-2:]) for out in outputs]


def _part_masks(labels: Tensor, loss: str, ignore_index: int) -> list[Tensor]:
    """Pixel sets normalised separately: CE all valid pixels; balanced CE B and F
    (docs/segmentation.md#loss-and-lr-formulas)."""
    if loss == "ce":
        return [labels != ignore_index]
    if loss == "balanced_ce":
        return [labels == 0, (labels != 0) & (labels != ignore_index)]
    raise ValueError(f"loss {loss!r}: check it with check_loss_type first")


def pixel_counts(labels: Tensor, sizes: Sequence[tuple[int, int]], loss: str,
                 ignore_index: int = 255) -> Tensor:
    """(terms, parts) float64 pixel counts of `labels` (N, H, W) resized to each term's size."""
    rows = []
    for size in sizes:
        resized = resize_labels(labels, size)
        rows.append(torch.stack([mask.sum() for mask in _part_masks(resized, loss,
                                                                    ignore_index)]))
    return torch.stack(rows).to(torch.float64)


def split_msc_loss(outputs: Tensor | Sequence[Tensor], labels: Tensor, counts: Tensor,
                   recipe: str = "deeplab", loss: str = "ce", ignore_index: int = 255,
                   at_input: bool = False) -> Tensor:
    """This split's share of the global MSC loss; `counts` = `pixel_counts` over all splits.

    term_o = Σ_p [n_op > 0] Σ_{i∈p} ℓ_i / n_op / #{p: n_op > 0}; deeplab sums the terms, vwe_author
    (outputs upsampled bilinearly to L1's size first) averages them (docs/segmentation.md#msc,
    docs/segmentation.md#loss-and-lr-formulas). `at_input`: every output upsampled to the
    labels' size instead, so no label pixel is dropped (docs/segmentation.md#loss-resolution).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if recipe == "vwe_author" or at_input:
        size = labels.shape[-2:] if at_input else outputs[0].shape[-2:]
        outputs = [out if out.shape[-2:] == size else
                   F.interpolate(out, size=size, mode="bilinear", align_corners=False)
                   for out in outputs]
    if counts.shape[0] != len(outputs):
        raise ValueError(f"counts for {counts.shape[0]} terms, {len(outputs)} outputs")
    terms = []
    for out, term_counts in zip(outputs, counts):
        target = resize_labels(labels, out.shape[-2:])
        per_pixel = F.cross_entropy(out.float(), target, ignore_index=ignore_index,
                                    reduction="none")
        present = (term_counts > 0).to(per_pixel.dtype)
        sums = torch.stack([(per_pixel * mask).sum()  # no host sync, unlike per_pixel[mask]
                            for mask in _part_masks(target, loss, ignore_index)])
        parts = sums / term_counts.clamp(min=1).to(per_pixel.dtype)
        terms.append((parts * present).sum() / present.sum().clamp(min=1))
    total = torch.stack(terms).sum()
    return total / len(terms) if recipe == "vwe_author" else total


def msc_loss(outputs: Tensor | Sequence[Tensor], labels: Tensor, recipe: str = "deeplab",
             loss: str = "ce", ignore_index: int = 255, at_input: bool = False) -> Tensor:
    """The MSC loss of one batch on its own: deeplab (KZ) sums the terms, each output scored at
    its own size against the nearest-resized label; vwe_author (RL) averages them at L1's size;
    `at_input` scores every term at the labels' size."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    recipe, loss = seg_recipe(recipe), check_loss_type(loss)
    sizes = target_sizes(recipe, [out.shape[-2:] for out in outputs],
                         tuple(labels.shape[-2:]) if at_input else None)
    counts = pixel_counts(labels, sizes, loss, ignore_index).to(labels.device)
    return split_msc_loss(outputs, labels, counts, recipe, loss, ignore_index, at_input)
