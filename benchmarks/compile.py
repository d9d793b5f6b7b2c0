"""torch.compile and channels_last for the training steps (issue: "optional torch.compile and
channels-last for the training stages where they help; measure"). Prints JSON.

For the CAM train step and the DeepLab train step at the demo's size (and VOC's with
`--sizes demo,voc`): eager float32, eager channels_last, and torch.compile (inductor) of the
network, alternated A B C A B C after warm-up; medians, the speed-up over eager, and the
one-off compile time (the first compiled step minus an eager step). Random initialisation.

    python benchmarks/compile.py [--sizes demo] [--repeats 5] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from vwe.cli import packaged_config
from vwe.config import load_config
from vwe.engine.memory import keep_freed_memory
from vwe.engine.optim import build_sgd
from vwe.models.cam_net import CamNet, cam_losses
from vwe.models.deeplab import build_deeplab, param_groups
from vwe.models.seg_loss import msc_loss

MODES = ("eager", "channels_last", "compile")
# size → CAM (config, crop, batch), DeepLab (backbone, crop, batch)
SIZES = {"demo": {"cam": ("demo.yaml", 128, 16), "seg": ("resnet_tiny", 96, 8)},
         "voc": {"cam": ("voc_cam_r50.yaml", 512, 2), "seg": ("resnet101", 321, 1)}}
Step = Callable[[], None]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _prepare(model: torch.nn.Module, images: torch.Tensor, mode: str):
    if mode == "channels_last":
        return model.to(memory_format=torch.channels_last), \
            images.contiguous(memory_format=torch.channels_last)
    if mode == "compile":
        return torch.compile(model), images
    return model, images


def cam_train(size: dict, device: torch.device, mode: str) -> Step:
    config, crop, batch = size["cam"]
    cfg = load_config(packaged_config(config), ["model.pretrained=none"])
    torch.manual_seed(0)
    model = CamNet(cfg.model, 20).to(device)
    tc = cfg.train_cam
    opt = build_sgd(model.param_groups(tc.lr, tc.new_lr_mult, tc.weight_decay), tc.momentum,
                    tc.weight_decay)
    net, images = _prepare(model, torch.randn(batch, 3, crop, crop, device=device), mode)
    labels = (torch.rand(batch, 20, device=device) < 0.15).float()

    def step() -> None:
        loss = cam_losses(net(images), labels, tc.losses, model.codebook.weight)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def seg_train(size: dict, device: torch.device, mode: str) -> Step:
    backbone, crop, batch = size["seg"]
    torch.manual_seed(0)
    model = build_deeplab(21, backbone, "torchvision").to(device).train()
    opt = torch.optim.SGD(param_groups(model, 2.5e-4, 5e-4, "deeplab"), lr=2.5e-4, momentum=0.9)
    net, images = _prepare(model, torch.randn(batch, 3, crop, crop, device=device), mode)
    labels = torch.randint(0, 21, (batch, crop, crop), device=device)

    def step() -> None:
        outputs = [o.float() for o in net(images)]
        opt.zero_grad(set_to_none=True)
        msc_loss(outputs, labels, "deeplab").backward()
        opt.step()
    return step


CASES = {"cam_train_step": cam_train, "seg_train_step": seg_train}


def timed(step: Step, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - start


def compare(case: Callable[..., Step], size: dict, device: torch.device, repeats: int) -> dict:
    steps = {mode: case(size, device, mode) for mode in MODES}
    first = {mode: timed(steps[mode], device) for mode in MODES}  # compile happens here
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:
            times[mode].append(timed(steps[mode], device))
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    out = {f"{mode}_s": round(value, 4) for mode, value in medians.items()}
    out.update({f"{mode}_speedup": round(medians["eager"] / medians[mode], 3)
                for mode in MODES[1:]})
    out["compile_time_s"] = round(first["compile"] - medians["eager"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="demo")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = torch.device(args.device)
    report: dict = {"benchmark": "compile", "device": str(device),
                    "cpu": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__}
    for size in args.sizes.split(","):
        report[size] = {case: compare(CASES[case], SIZES[size], device, args.repeats)
                        for case in args.cases.split(",")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
