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


@torch.inference_mode()
def cams_of_pairs(model: CamNet, pairs: list[torch.Tensor], image_size: tuple[int, int],
                  keys: np.ndarray, cam_cfg: CamConfig, codebook: torch.Tensor | None = None
                  ) -> dict[str, np.ndarray]:
    """`multiscale_cams` from the `scaled_pairs` of an image of `image_size` (H, W)."""
    height, width = image_size
    strided_size = ((height - 1) // 4 + 1, (width - 1) // 4 + 1)
    device = next(model.parameters()).device
    branches = ("img", "word") if cam_cfg.fuse_word_cam else ("img",)
    sums = {(b, r): None for b in branches for r in ("cam", "high_res")}
    index = torch.as_tensor(keys, dtype=torch.long, device=device)
    layout = memory_format(model)
    for pair in pairs:
        pair = pair.to(device, non_blocking=True).contiguous(memory_format=layout)
        with autocast(device, cam_cfg.amp):
            img_cam, word_cam = model.cam_maps(pair, codebook=codebook,
                                               with_word_cam=cam_cfg.fuse_word_cam)
        for branch, maps in zip(branches, (img_cam, word_cam)):
            # only the labelled channels: resizing is per channel, so this changes no value
            fused = fuse_flips(maps[:, index].float(), cam_cfg.flip_fusion)
            for res, size, how in (("cam", strided_size, "direct"),
                                   ("high_res", (height, width), cam_cfg.high_res_resize)):
                resized = resize_maps(fused, size, how)
                prev = sums[(branch, res)]
                sums[(branch, res)] = resized if prev is None else prev.add_(resized)
    out: dict[str, np.ndarray] = {"keys": np.asarray(keys, dtype=np.int64)}
    for res in ("cam", "high_res"):
        parts = {b: normalise_channels(sums[(b, res)]) for b in branches}
        if cam_cfg.fuse_word_cam:
            out[res] = torch.maximum(parts["img"], parts["word"]).cpu().numpy()
            out[f"{res}_img"] = parts["img"].cpu().numpy()
            out[f"{res}_word"] = parts["word"].cpu().numpy()
        else:
            out[res] = parts["img"].cpu().numpy()
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in out.items()}
