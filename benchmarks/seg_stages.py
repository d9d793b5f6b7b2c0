"""Segmentation stages speed: train step, inference, dense CRF, augmentation. Prints JSON.

Train: one SGD update of the global-batch MSC loss (recipe deeplab) on random crops. Infer: whole
500×375 image through `predict_logits` (model MSC, outer scales, optional flip). CRF: the
docs/segmentation.md#dense-crf CRF on that image's softmax (21 classes), one core. Augmentation:
docs/segmentation.md#augmentation on a 500×375 image. Random initialisation; nothing is downloaded.

    python benchmarks/seg_stages.py [--device cuda] [--backbone resnet101] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch

from vwe.config import CrfConfig
from vwe.data.segmentation import SegTrainTransform, normalize_pixels
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.inference.segmentation import crf_kwargs, predict_logits
from vwe.models.deeplab import build_deeplab, input_normalization, param_groups
from vwe.models.seg_loss import msc_output_sizes, pixel_counts, split_msc_loss, target_sizes
from vwe.refine.crf import crf_inference_prob

NUM_CLASSES = 21


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_speed(model, batch: int, crop: int, steps: int, device: torch.device) -> dict:
    optimizer = build_sgd(param_groups(model, 2.5e-4), momentum=0.9, weight_decay=5e-4)
    sizes = target_sizes("deeplab", msc_output_sizes(model, crop, device))
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch, crop, crop), device=device)

    def step(t: int) -> None:
        set_poly_lr(optimizer, t, 1000, 0.9, 10)
        counts = pixel_counts(labels, sizes, "ce")
        optimizer.zero_grad(set_to_none=True)
        split_msc_loss(model(images), labels, counts).backward()
        optimizer.step()

    model.train()
    step(0)
    synchronize(device)
    start = time.perf_counter()
    for t in range(1, steps + 1):
        step(t)
    synchronize(device)
    return {"crop": crop, "batch": batch,
            "train_images_per_s": round(batch * steps / (time.perf_counter() - start), 3)}


def infer_speed(model, image: np.ndarray, scales: list[float], flip: bool, repeats: int,
                layout: str) -> dict:
    pixels = normalize_pixels(image, *input_normalization(layout))
    model.eval()
    predict_logits(model, pixels, scales, flip)
    start = time.perf_counter()
    for _ in range(repeats):
        logits = predict_logits(model, pixels, scales, flip)
    synchronize(logits.device)
    seconds = (time.perf_counter() - start) / repeats
    return {"scales": scales, "flip": flip, "infer_s_per_image": round(seconds, 4),
            "probs": torch.softmax(logits, 0).cpu().numpy()}


def crf_speed(image: np.ndarray, probs: np.ndarray) -> dict:
    start = time.perf_counter()
    crf_inference_prob(image, probs, **crf_kwargs(CrfConfig()))
    return {"crf_s_per_image": round(time.perf_counter() - start, 3)}


def augment_speed(image: np.ndarray, repeats: int = 20) -> dict:
    label = np.zeros(image.shape[:2], np.uint8)
    transform = SegTrainTransform()
    start = time.perf_counter()
    for seed in range(repeats):
        transform(image, label, random.Random(seed))
    return {"augment_images_per_s": round(repeats / (time.perf_counter() - start), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet_tiny")
    parser.add_argument("--layout", default="torchvision")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--crop", type=int, default=321)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_deeplab(NUM_CLASSES, args.backbone, args.layout).to(device)
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    report = {"device": str(device), "backbone": args.backbone, "layout": args.layout,
              "train": train_speed(model, args.batch, args.crop, args.steps, device)}
    with torch.no_grad():
        plain = infer_speed(model, image, [1.0], False, 2, args.layout)
        ms_flip = infer_speed(model, image, [1.0, 1.25, 1.5], True, 1, args.layout)
    smooth = np.full((375, 500, 3), 128, np.uint8)
    report["crf"] = crf_speed(smooth, plain.pop("probs"))
    ms_flip.pop("probs")
    report["infer"] = [plain, ms_flip]
    report["augment"] = augment_speed(image)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
