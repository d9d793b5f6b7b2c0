"""Multi-scale + flip CAMs of one image (docs/method.md#cam-inference): the maths `vwe make-cam`
and `vwe predict` share.

Per scale: PIL-bicubic rescale, the image and its mirror in one batch, ReLU CAMs, flip fusion
(max, or IRNet's sum); each scale resized bilinearly to stride 4 and to full resolution and
summed over scales; the labelled channels divided by their max + 1e-5.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vwe.config import CamConfig
from vwe.data.transforms import normalize, rescale
from vwe.engine.precision import autocast
from vwe.errors import VweError
from vwe.models.cam_net import CamNet

NORM_EPS = 1e-5  # authors: divide by max + 1e-5


def fuse_flips(maps: torch.Tensor, how: str) -> torch.Tensor:
    """(2, C, h, w) maps of an image and its mirror → (C, h, w)."""
    mirrored = maps[1].flip(-1)
    if how == "max":
        return torch.maximum(maps[0], mirrored)
    if how == "sum":
        return maps[0] + mirrored
    raise VweError(f"cam.flip_fusion must be max or sum, not '{how}'")


def resize_maps(maps: torch.Tensor, size: tuple[int, int], how: str = "direct") -> torch.Tensor:
    """Bilinear (align_corners=False) to `size`; `irnet_crop` resizes to the stride-16-rounded
    size and crops, as IRNet's make_cam does (docs/refinement.md#make-cam-output)."""
    if maps.shape[0] == 0:  # an image without labelled classes
        return maps.new_zeros((0, *size))
    if how == "direct":
        return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    if how == "irnet_crop":
        padded = (16 * -(-size[0] // 16), 16 * -(-size[1] // 16))
        up = F.interpolate(maps[None], size=padded, mode="bilinear", align_corners=False)[0]
        return up[:, : size[0], : size[1]]
    raise VweError(f"cam.high_res_resize must be direct or irnet_crop, not '{how}'")


def normalise_channels(maps: torch.Tensor) -> torch.Tensor:
    """Each channel divided by its own max + 1e-5 (maps are already ≥ 0)."""
    peak = maps.flatten(1).max(dim=1).values
    return maps / (peak[:, None, None] + NORM_EPS)


def scaled_pairs(image: np.ndarray, scales: list[float]) -> list[torch.Tensor]:
    """Per scale, the normalised rescaled image and its mirror as a (2, 3, h, w) float32 batch:
    the CPU half of make-cam, which a DataLoader worker can do ahead of the network
    (docs/performance.md#make-cam)."""
    pairs = []
    for scale in scales:
        scaled = normalize(rescale(image, scale))  # (h, w, 3) float32
        pair = np.stack([scaled, scaled[:, ::-1]]).transpose(0, 3, 1, 2)
        pairs.append(torch.from_numpy(np.ascontiguousarray(pair)))
    return pairs


def multiscale_cams(model: CamNet, image: np.ndarray, keys: np.ndarray, cam_cfg: CamConfig,
                    codebook: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """CAMs of one uint8 (H, W, 3) image for the classes `keys` (0-based).

    Returns `cam` (K, ⌈H/4⌉, ⌈W/4⌉) and `high_res` (K, H, W), plus `*_img` / `*_word` parts
    when the word CAM is fused.
    """
    return cams_of_pairs(model, scaled_pairs(image, cam_cfg.scales), image.shape[:2], keys,
                         cam_cfg, codebook)


def memory_format(model: torch.nn.Module) -> torch.memory_format:
    """channels_last when the model's first 4-D weight is stored so (make-cam converts its
    network, docs/performance.md#make-cam), else the default layout."""
    for param in model.parameters():
        if param.ndim == 4:
            if not param.is_contiguous() and \
                    param.is_contiguous(memory_format=torch.channels_last):
                return torch.channels_last
            break
    return torch.contiguous_format


def cams_of_pairs(model: CamNet, pairs: list[torch.Tensor], image_size: tuple[int, int],
                  keys: np.ndarray, cam_cfg: CamConfig, codebook: torch.Tensor | None = None
                  ) -> dict[str, np.ndarray]:
    """`multiscale_cams` from the `scaled_pairs` of an image of `image_size` (H, W)."""
    return cams_of_images(model, [(pairs, keys)], image_size, cam_cfg, codebook)[0]


@torch.inference_mode()
def cams_of_images(model: CamNet, images: list[tuple[list[torch.Tensor], np.ndarray]],
                   image_size: tuple[int, int], cam_cfg: CamConfig,
                   codebook: torch.Tensor | None = None) -> list[dict[str, np.ndarray]]:
    """`cams_of_pairs` of several images of one size, given as (scaled pairs, keys): each scale
    of all of them in one forward (docs/performance.md#make-cam). The network treats batch
    elements independently (eval mode), so an image's maps are those it gets alone; scales of
    one image cannot share a batch that way (padding would change the maps at the borders)."""
    device = next(model.parameters()).device
    layout = memory_format(model)
    sums = [_ScaleSums(keys, image_size, cam_cfg, device) for _, keys in images]
    for scale in range(len(images[0][0])):
        pairs = [scaled[scale] for scaled, _ in images]
        batch = pairs[0] if len(pairs) == 1 else torch.cat(pairs)
        batch = batch.to(device, non_blocking=True).contiguous(memory_format=layout)
        with autocast(device, cam_cfg.amp):
            img_cam, word_cam = model.cam_maps(batch, codebook=codebook,
                                               with_word_cam=cam_cfg.fuse_word_cam)
        for i, image_sums in enumerate(sums):
            pair = slice(2 * i, 2 * i + 2)
            image_sums.add(img_cam[pair], None if word_cam is None else word_cam[pair])
    return [image_sums.result() for image_sums in sums]


class _ScaleSums:
    """One image's flip-fused maps summed over scales, at stride 4 and at full resolution."""

    def __init__(self, keys: np.ndarray, image_size: tuple[int, int], cam_cfg: CamConfig,
                 device: torch.device) -> None:
        height, width = image_size
        self.keys, self.cfg = keys, cam_cfg
        self.index = torch.as_tensor(keys, dtype=torch.long, device=device)
        self.branches = ("img", "word") if cam_cfg.fuse_word_cam else ("img",)
        self.sizes = {"cam": (((height - 1) // 4 + 1, (width - 1) // 4 + 1), "direct"),
                      "high_res": ((height, width), cam_cfg.high_res_resize)}
        self.sums: dict[tuple[str, str], torch.Tensor] = {}

    def add(self, img_cam: torch.Tensor, word_cam: torch.Tensor | None) -> None:
        """The (2, C, h, w) maps of one scale's image and mirror."""
        for branch, maps in zip(self.branches, (img_cam, word_cam)):
            # only the labelled channels: resizing is per channel, so this changes no value
            fused = fuse_flips(maps[:, self.index].float(), self.cfg.flip_fusion)
            for res, (size, how) in self.sizes.items():
                resized = resize_maps(fused, size, how)
                prev = self.sums.get((branch, res))
                self.sums[(branch, res)] = resized if prev is None else prev.add_(resized)

    def result(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"keys": np.asarray(self.keys, dtype=np.int64)}
        for res in self.sizes:
            parts = {b: normalise_channels(self.sums[(b, res)]) for b in self.branches}
            if self.cfg.fuse_word_cam:
                out[res] = torch.maximum(parts["img"], parts["word"]).cpu().numpy()
                out[f"{res}_img"] = parts["img"].cpu().numpy()
                out[f"{res}_word"] = parts["word"].cpu().numpy()
            else:
                out[res] = parts["img"].cpu().numpy()
        return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}
