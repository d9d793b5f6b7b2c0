"""CAM stage speed and memory: training images/s and make-cam images/s. Prints JSON.

Settings: `voc` = ResNet-50, 512 crops, batch 2 (the paper's recipe at a CPU-sized batch);
`demo` = configs/demo.yaml (resnet_tiny, 128 crops, batch 16). make-cam runs the paper's four
scales + flip on a 500×375 image. Random initialisation; nothing is downloaded.

    python benchmarks/cam_stage.py [--device cuda] [--steps 3]
    python benchmarks/cam_stage.py --device cuda --batch-images 1,4,8   # make-cam batching only

`--batch-images` times make-cam's network as the stage runs it (batch norm folded,
channels_last on CUDA) on VOC-size images of one size, `cam.batch_images` at each value.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from vwe.cli import packaged_config
from vwe.config import load_config
from vwe.engine.optim import build_sgd, set_poly_lr
from vwe.inference.cams import multiscale_cams
from vwe.models.cam_net import CamNet, cam_losses


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_speed(cfg, batch: int, crop: int, steps: int, device: torch.device) -> dict:
    model = CamNet(cfg.model, 20).to(device)
    tc = cfg.train_cam
    opt = build_sgd(model.param_groups(tc.lr, tc.new_lr_mult, tc.weight_decay), tc.momentum,
                    tc.weight_decay)
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = (torch.rand(batch, 20, device=device) < 0.15).float()

    def step(t: int) -> None:
        set_poly_lr(opt, t, 1000, 0.9)
        out = model(images)
        loss = cam_losses(out, labels, tc.losses,
                          model.codebook.weight if model.codebook is not None else None)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in range(1, steps + 1):
        step(t)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"backbone": cfg.model.backbone, "crop": crop, "batch": batch,
            "train_images_per_s": round(batch * steps / seconds, 3),
            "peak_memory_mb": round(peak_memory_mb(device), 1)}


def make_cam_speed(cfg, images: int, device: torch.device) -> dict:
    model = CamNet(cfg.model, 20).to(device).eval()
    image = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
    keys = np.array([0, 14])
    multiscale_cams(model, image, keys, cfg.cam)
    start = time.perf_counter()
    for _ in range(images):
        multiscale_cams(model, image, keys, cfg.cam)
    seconds = time.perf_counter() - start
    return {"backbone": cfg.model.backbone, "image": "500x375", "scales": list(cfg.cam.scales),
            "make_cam_images_per_s": round(images / seconds, 3)}


def make_cam_batch_speed(cfg, batches: list[int], images: int, device: torch.device) -> dict:
    from vwe.engine.memory import keep_freed_memory
    from vwe.inference.cams import cams_of_images, scaled_pairs
    from vwe.models.backbone import fold_batch_norm

    keep_freed_memory()  # as the stage does
    model = fold_batch_norm(CamNet(cfg.model, 20).eval())
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device, memory_format=layout)
    rng = np.random.default_rng(0)
    inputs = [(scaled_pairs(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8),
                            cfg.cam.scales), np.array([0, 14])) for _ in range(images)]
    out: dict = {"backbone": cfg.model.backbone, "image": "500x375", "images": images}
    for batch in batches:
        def once(batch: int = batch) -> None:
            for start in range(0, images, batch):
                cams_of_images(model, inputs[start:start + batch], (375, 500), cfg.cam)
        once()  # warm-up (cuDNN autotuning, allocator)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        start_s = time.perf_counter()
        once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[f"batch_{batch}"] = {"images_per_s": round(images / (time.perf_counter() - start_s), 3),
                                 "peak_memory_mb": round(peak_memory_mb(device), 1)}
    base = out[f"batch_{batches[0]}"]["images_per_s"]
    out["speedup_over_first"] = {str(b): round(out[f"batch_{b}"]["images_per_s"] / base, 3)
                                 for b in batches}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-images", default="", help="e.g. 1,4,8: make-cam batching only")
    parser.add_argument("--images", type=int, default=16, help="images for --batch-images")
    args = parser.parse_args()
    device = torch.device(args.device)
    voc = load_config(packaged_config("voc_cam_r50.yaml"), ["model.pretrained=none"])
    if args.batch_images:
        batches = [int(b) for b in args.batch_images.split(",")]
        print(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                          "make_cam_batches": make_cam_batch_speed(voc, batches, args.images,
                                                                   device)}, indent=2))
        return
    demo = load_config(packaged_config("demo.yaml"))
    results = {
        "device": str(device), "threads": torch.get_num_threads(),
        "train_voc": train_speed(voc, 2, 512, args.steps, device),
        "train_demo": train_speed(demo, 16, 128, args.steps * 3, device),
        "make_cam_voc": make_cam_speed(voc, args.steps, device),
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
