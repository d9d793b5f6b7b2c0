"""DeepLabV2-R101 speed on this machine (docs/segmentation.md#deeplabv2): training and inference
images/s.

Training: one 321×321 crop per step (batch 1), MSC (1, 0.5, 0.75), the deeplab recipe's loss and
SGD step. Inference: a VOC-sized 375×500 image, no gradient, single scale (the base net) and the
default MSC max fusion. Prints one JSON object; a few iterations only (CPU, well under 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from vwe.models.deeplab import build_deeplab, param_groups
from vwe.models.seg_loss import msc_loss


def _timed(step, iters: int, warmup: int) -> float:
    """Seconds per call of `step` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters


def bench_train(model: torch.nn.Module, device: torch.device, iters: int, warmup: int) -> dict:
    """One SGD step on a random 321 crop with random labels (batch 1)."""
    model.train()
    optimizer = torch.optim.SGD(param_groups(model, 2.5e-4, 5e-4, "deeplab"), lr=2.5e-4,
                                momentum=0.9)
    images = torch.randn(1, 3, 321, 321, device=device)
    labels = torch.randint(0, 21, (1, 321, 321), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        msc_loss(model(images), labels, "deeplab").backward()
        optimizer.step()
        _sync(device)

    seconds = _timed(step, iters, warmup)
    return {"crop": 321, "batch": 1, "msc_scales": [1.0, 0.5, 0.75], "iters": iters,
            "s_per_iter": round(seconds, 3), "images_per_s": round(1.0 / seconds, 4)}


def bench_infer(net: torch.nn.Module, device: torch.device, iters: int, warmup: int) -> dict:
    """Forward of one 375×500 image without gradients."""
    net.eval()
    image = torch.randn(1, 3, 375, 500, device=device)

    @torch.no_grad()
    def step() -> None:
        net(image)
        _sync(device)

    seconds = _timed(step, iters, warmup)
    return {"size": [375, 500], "iters": iters, "s_per_image": round(seconds, 3),
            "images_per_s": round(1.0 / seconds, 4)}


def _load_average() -> float | None:
    """1-minute load average: CPU numbers mean little when other jobs share the cores."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layout", default="caffe", choices=["caffe", "torchvision"])
    parser.add_argument("--iters", type=int, default=2, help="timed inference calls")
    parser.add_argument("--train-iters", type=int, default=1, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_deeplab(21, layout=args.layout).to(device)
    result = {
        "benchmark": "deeplabv2_r101", "layout": args.layout, "device": str(device),
        "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "load_avg_1min": _load_average(),
        "train": bench_train(model, device, args.train_iters, args.warmup),
        "infer_single_scale": bench_infer(model.base, device, args.iters, args.warmup),
        "infer_msc": bench_infer(model, device, args.train_iters, args.warmup),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
