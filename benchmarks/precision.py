"""float32 vs bfloat16 autocast (the stages' `amp` keys, docs/pipeline.md#precision): seconds per
step or image of the CAM train step, make-cam, the train-irn step, the DeepLab train step and
DeepLab inference, at the demo's and VOC's sizes. Prints JSON.

fp32 and bf16 alternate (A B A B) in one process; each entry gives both medians and
`speedup` = fp32 / bf16 (> 1: bf16 is faster). Random initialisation; nothing is downloaded.
CPUs without native bfloat16 (AVX512-BF16 / AMX) are usually slower in bf16.

    python benchmarks/precision.py [--device cuda] [--sizes demo,voc] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from vwe.cli import packaged_config
from vwe.config import load_config
from vwe.engine.memory import keep_freed_memory
from vwe.engine.optim import build_sgd
from vwe.engine.precision import autocast
from vwe.inference.cams import multiscale_cams
from vwe.models.backbone import fold_batch_norm
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.deeplab import build_deeplab, param_groups
from vwe.models.irn import IRNet, affinity_targets, irn_loss_terms, irn_total_loss, path_tensors
from vwe.models.seg_loss import msc_loss
from vwe.refine.path_index import PathIndex

Step = Callable[[bool], None]  # amp on/off → one timed unit of work

# size → settings: CAM (config, crop, batch), make-cam image (H, W), IRNet (backbone, crop,
# batch), DeepLab (backbone, crop, batch), DeepLab inference (H, W)
SIZES = {
    "demo": {"cam": ("demo.yaml", 128, 16), "image": (128, 160), "irn": ("resnet_tiny", 128, 32),
             "seg": ("resnet_tiny", 96, 8), "infer": (128, 160)},
    "voc": {"cam": ("voc_cam_r50.yaml", 512, 2), "image": (375, 500),
            "irn": ("resnet50", 512, 2), "seg": ("resnet101", 321, 1), "infer": (375, 500)},
    # the paper's batches, for a GPU (benchmarks/gpu_check.sh)
    "gpu": {"cam": ("voc_cam_r50.yaml", 512, 16), "image": (375, 500),
            "irn": ("resnet50", 512, 32), "seg": ("resnet101", 321, 10), "infer": (375, 500)},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cam_config(name: str):
    return load_config(packaged_config(name), ["model.pretrained=none"])


def cam_train(size: dict, device: torch.device) -> Step:
    config, crop, batch = size["cam"]
    cfg = cam_config(config)
    model = CamNet(cfg.model, 20).to(device)
    tc = cfg.train_cam
    opt = build_sgd(model.param_groups(tc.lr, tc.new_lr_mult, tc.weight_decay), tc.momentum,
                    tc.weight_decay)
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = (torch.rand(batch, 20, device=device) < 0.15).float()

    def step(amp: bool) -> None:
        with autocast(device, amp):
            out = model(images)
            loss = cam_losses(out, labels, tc.losses, model.codebook.weight)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def make_cam(size: dict, device: torch.device) -> Step:
    cfg = cam_config(size["cam"][0])
    model = fold_batch_norm(CamNet(cfg.model, 20).eval())  # as make-cam loads it
    model = model.to(device, memory_format=torch.channels_last)
    image = np.random.default_rng(0).integers(0, 256, (*size["image"], 3), dtype=np.uint8)

    def step(amp: bool) -> None:
        cfg.cam.amp = amp
        multiscale_cams(model, image, np.array([0, 14]), cfg.cam)
    return step


def irn_train(size: dict, device: torch.device) -> Step:
    backbone, crop, batch = size["irn"]
    model = IRNet(backbone).to(device).train()
    opt = build_sgd(model.param_groups(0.1, 1e-4), momentum=0.9, weight_decay=1e-4)
    paths = path_tensors(PathIndex(10, (crop // 4, crop // 4)), device)
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, 3, (batch, crop // 4, crop // 4), device=device)

    def step(amp: bool) -> None:  # as train-irn's train_step
        with autocast(device, amp):
            edge_logits, displacement = model(images)
        targets = affinity_targets(labels, paths)
        sums, counts = irn_loss_terms(edge_logits.float(), displacement.float(), targets, paths)
        total, _ = irn_total_loss(sums, counts)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    return step


def seg_train(size: dict, device: torch.device) -> Step:
    backbone, crop, batch = size["seg"]
    model = build_deeplab(21, backbone, "torchvision").to(device).train()
    opt = torch.optim.SGD(param_groups(model, 2.5e-4, 5e-4, "deeplab"), lr=2.5e-4, momentum=0.9)
    images = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, 21, (batch, crop, crop), device=device)

    def step(amp: bool) -> None:  # as train-seg: network in autocast, loss in float32
        with autocast(device, amp):
            outputs = [o.float() for o in model(images)]
        opt.zero_grad(set_to_none=True)
        msc_loss(outputs, labels, "deeplab").backward()
        opt.step()
    return step


def seg_infer(size: dict, device: torch.device) -> Step:
    model = build_deeplab(21, size["seg"][0], "torchvision").to(device).eval()
    image = torch.randn(1, 3, *size["infer"], device=device)

    @torch.inference_mode()
    def step(amp: bool) -> None:
        with autocast(device, amp):
            model.base(image).float()
    return step


CASES = {"cam_train_step": cam_train, "make_cam_image": make_cam, "irn_train_step": irn_train,
         "seg_train_step": seg_train, "seg_infer_image": seg_infer}


def compare(step: Step, device: torch.device, repeats: int) -> dict:
    """fp32 / bf16 alternated after one warm-up each; medians, the speed-up and, on CUDA, the
    peak memory of each."""
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    peak: dict[str, float] = {}
    for amp in (False, True):
        step(amp)
    for _ in range(repeats):
        for name, amp in (("fp32", False), ("bf16", True)):
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            step(amp)
            _sync(device)
            times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) / 2**20
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    out = {"fp32_s": round(fp32, 4), "bf16_s": round(bf16, 4), "speedup": round(fp32 / bf16, 3)}
    out.update({f"{name}_peak_mb": round(mb, 1) for name, mb in peak.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="demo,voc")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as every stage does (docs/performance.md#make-cam)
    device = torch.device(args.device)
    report: dict = {"benchmark": "precision", "device": str(device),
                    "cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__}
    for size in args.sizes.split(","):
        report[size] = {}
        for case in args.cases.split(","):
            torch.manual_seed(0)
            report[size][case] = compare(CASES[case](SIZES[size], device), device, args.repeats)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
