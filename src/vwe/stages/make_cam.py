"""`vwe make-cam`: multi-scale + flip CAMs, one `.npz` per image (docs/method.md#cam-inference).

Per scale: PIL-bicubic rescale, the image and its mirror in one batch, ReLU CAMs, flip fusion
(max, or IRNet's sum); then each scale is resized bilinearly to stride 4 and to full resolution
and summed over scales; the labelled channels are divided by their max + 1e-5. With
`cam.fuse_word_cam` the word CAMs go through the same steps and the stored CAM is the
element-wise max of the two normalised maps (our reading of the paper, docs/method.md).
A file keeps the fused maps; the parts only with `cam.save_parts`, float16 with `cam.dtype`
(docs/formats.md#cam-files). Runs on the per-image runner: images already done with the same
record are skipped, so an interrupted run resumes; ranks take strided shares. With
`cam.batch_images` > 1, images of one size share each scale's forward (same CAMs,
docs/performance.md#make-cam).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vwe.config import CamConfig, Config
from vwe.data.cam_files import stored_cam_arrays
from vwe.data.io import image_size, read_image, save_npz
from vwe.data.voc import VocLayout, open_dataset
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import load_trained
from vwe.engine.distributed import DistContext
from vwe.engine.memory import keep_freed_memory
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.run_dir import RunDir
from vwe.inference.cams import cams_of_images, scaled_pairs
from vwe.inference.trained_scale import LongSideRange, at_trained_scale, trained_long_side
from vwe.models.backbone import fold_batch_norm
from vwe.models.cam_net import CamNet
from vwe.stage_records import stage_record

log = logging.getLogger(__name__)


def load_cam_net(cfg: Config, num_classes: int, device: torch.device
                 ) -> tuple[CamNet, torch.Tensor | None, LongSideRange | None]:
    """The trained network, as its checkpoint records it (every model.* key of the config must
    agree), its memory-bank codebook and the long sides it trained at (None with
    cam.trained_scale off or when the checkpoint does not say)."""
    model_keys = {f"model.{f.name}": (f.name, getattr(cfg.model, f.name))
                  for f in dataclasses.fields(cfg.model) if f.name != "pretrained"}
    trained = load_trained(RunDir(cfg).cam_checkpoint, "cam_net", num_classes, model_keys)
    codebook = trained.state.get("codebook")
    # inference only (docs/performance.md#make-cam): BN folded into the convs; channels_last on
    # CUDA only: on the CPU, oneDNN's channels_last kernels move CAMs by 1.4e-5 from float64
    # (contiguous: 5e-6, as the authors' code), so the CPU keeps the accurate layout
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = fold_batch_norm(trained.model).to(device, memory_format=layout)
    long_range = trained_long_side(trained.state) if cfg.cam.trained_scale else None
    return model, (codebook.to(device) if codebook is not None else None), long_range


class CamInputs(Dataset):
    """Per image: its name, (H, W) and the `scaled_pairs` of cam.scales, made in DataLoader
    workers ahead of the network (docs/performance.md#make-cam)."""

    def __init__(self, layout: VocLayout, names: list[str], scales: list[float],
                 long_range: LongSideRange | None = None) -> None:
        self.layout, self.names, self.scales = layout, names, list(scales)
        self.long_range = long_range

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[str, tuple[int, int], list[torch.Tensor]]:
        name = self.names[index]
        image = read_image(self.layout.image_path(name))
        scales = at_trained_scale(self.scales, image.shape[:2], self.long_range)
        return name, tuple(image.shape[:2]), scaled_pairs(image, scales)


def _as_is(sample: Any) -> Any:
    """DataLoader collate that leaves a sample alone (batch_size=None)."""
    return sample


Sample = tuple[str, tuple[int, int], list[torch.Tensor]]  # name, (H, W), scaled pairs


def same_size_groups(samples: Iterable[Sample], limit: int) -> Iterator[list[Sample]]:
    """Consecutive samples of one image size, at most `limit` per group, in their order."""
    group: list[Sample] = []
    for sample in samples:
        if group and (sample[1] != group[0][1] or len(group) == limit):
            yield group
            group = []
        group.append(sample)
    if group:
        yield group


def cams_within_memory(model: CamNet, inputs: list[tuple[list[torch.Tensor], np.ndarray]],
                       size: tuple[int, int], cam_cfg: CamConfig,
                       codebook: torch.Tensor | None) -> list[dict[str, np.ndarray]]:
    """`cams_of_images` of a group, halving the group while it does not fit in memory (one
    image that does not fit is the caller's out-of-memory error)."""
    try:
        return cams_of_images(model, inputs, size, cam_cfg, codebook)
    except (torch.OutOfMemoryError, MemoryError):
        if len(inputs) == 1:
            raise
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(inputs) // 2
    log.info("make-cam: %d images of %dx%d do not fit in one batch, trying %d", len(inputs),
             size[1], size[0], half)
    return (cams_within_memory(model, inputs[:half], size, cam_cfg, codebook)
            + cams_within_memory(model, inputs[half:], size, cam_cfg, codebook))


def run(cfg: Config) -> dict:
    return dist_utils.in_process_group(make_cams, cfg)


def cam_outputs(run_dir: RunDir) -> ImageOutputs:
    return ImageOutputs((run_dir.cams,), lambda name: [run_dir.cam_file(name)], ("*.npz",))


def make_cams(cfg: Config, ctx: DistContext) -> dict:
    keep_freed_memory()  # docs/performance.md#make-cam: ~1 M page faults an image otherwise
    run_dir = RunDir(cfg)
    layout = open_dataset(cfg.data)
    names, labels = layout.split_with_labels(cfg.cam.split)
    model, codebook, long_range = load_cam_net(cfg, len(layout.class_names), ctx.device)
    out_dir = run_dir.cams

    def process(todo: list[str]) -> Iterator[None]:
        if cfg.cam.batch_images > 1:  # images of one size next to each other (headers only)
            todo = sorted(todo, key=lambda name: image_size(layout.image_path(name)))
        loader = DataLoader(CamInputs(layout, todo, cfg.cam.scales, long_range), batch_size=None,
                            collate_fn=_as_is, num_workers=min(cfg.data.num_workers, len(todo)),
                            pin_memory=ctx.device.type == "cuda")
        with ThreadPoolExecutor(max_workers=1) as writer:  # deflate overlaps the next images
            pending: list[Future] = []
            for group in same_size_groups(loader, cfg.cam.batch_images):
                inputs = [(pairs, np.flatnonzero(labels[name])) for name, _, pairs in group]
                all_cams = cams_within_memory(model, inputs, group[0][1], cfg.cam, codebook)
                for future in pending:
                    future.result()
                    yield None
                pending = [writer.submit(save_npz, run_dir.cam_file(name), compressed=True,
                                         **stored_cam_arrays(cams, cfg.cam.save_parts,
                                                             cfg.cam.dtype))
                           for (name, _, _), cams in zip(group, all_cams)]
            for future in pending:
                future.result()
                yield None

    result = run_per_image("make_cam", names, cam_outputs(run_dir),
                           stage_record(cfg, "make_cam"), cfg.overwrite, ctx, process)
    log.info("make-cam: %d CAM files in %s", len(names), out_dir)
    return {"cam_dir": str(out_dir), "split": cfg.cam.split, "images": len(names),
            "computed": len(result.computed)}
