"""CUDA checks (marked gpu, skipped without CUDA; benchmarks/gpu_check.sh runs them): the
inference and training paths give on the GPU what they give on the CPU
(docs/performance.md#gpu-check)."""

import numpy as np
import pytest
import torch

from vwe.config import CamConfig, load_config
from vwe.engine.precision import autocast
from vwe.inference.cams import multiscale_cams
from vwe.models.backbone import fold_batch_norm
from vwe.models.cam_net import CamNet, cam_losses

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def cam_net() -> tuple[CamNet, object]:
    cfg = load_config(None, ["model.backbone=resnet18", "model.pretrained=none",
                             "model.num_words=16"])
    torch.manual_seed(0)
    return CamNet(cfg.model, 5), cfg


def test_make_cam_on_cuda_equals_cpu():
    model, _ = cam_net()
    folded = fold_batch_norm(model.eval())
    image = np.random.default_rng(0).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    cfg = CamConfig(scales=[1.0, 0.5, 1.5, 2.0])
    cpu = multiscale_cams(folded, image, np.array([0, 3]), cfg)
    gpu = multiscale_cams(folded.cuda(), image, np.array([0, 3]), cfg)
    for key in ("cam", "high_res"):
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-4)
    half = multiscale_cams(folded, image, np.array([0, 3]), CamConfig(scales=[1.0], amp=True))
    assert half["high_res"].dtype == np.float32


def test_train_cam_step_on_cuda_equals_cpu_and_bf16_is_close():
    model, cfg = cam_net()
    images = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([[1.0, 0, 1, 0, 0], [0, 1, 0, 0, 1]])
    losses = {}
    for device, amp in (("cpu", False), ("cuda", False), ("cuda", True)):
        net = model.to(device)
        with autocast(torch.device(device), amp):
            out = net(images.to(device))
            losses[(device, amp)] = float(cam_losses(out, labels.to(device), cfg.train_cam.losses,
                                                     net.codebook.weight)["total"])
    assert losses[("cuda", False)] == pytest.approx(losses[("cpu", False)], rel=1e-4)
    assert losses[("cuda", True)] == pytest.approx(losses[("cpu", False)], rel=3e-2)
