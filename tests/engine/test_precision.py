"""bfloat16 autocast on CPU: the switch turns the network's matmuls to bfloat16 and the stages
that take `amp` give float32 outputs close to, but not equal to, float32 runs."""

import numpy as np
import pytest
import torch

from vwe.config import CamConfig, load_config
from vwe.engine.precision import autocast
from vwe.inference.cams import multiscale_cams
from vwe.stages import train_cam

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_autocast_runs_convolutions_in_bfloat16_on_cpu_only_when_enabled():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with autocast(torch.device("cpu"), True):
        assert conv(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), False):
        assert conv(x).dtype == torch.float32


class TinyCams(torch.nn.Module):
    """A conv 'CAM network' whose outputs must pass through autocast."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 5, stride=4, padding=2)
        self.seen: list[torch.dtype] = []

    def cam_maps(self, images, codebook=None, with_word_cam=False):
        maps = torch.relu(self.conv(images))
        self.seen.append(maps.dtype)
        return maps, (maps * 0.5 if with_word_cam else None)


def test_cam_amp_gives_float32_maps_close_to_float32():
    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    keys = np.array([0, 2])
    model = TinyCams()
    full = multiscale_cams(model, image, keys, CamConfig(scales=[1.0, 0.5]))
    half = multiscale_cams(model, image, keys, CamConfig(scales=[1.0, 0.5], amp=True))
    assert model.seen == [torch.float32] * 2 + [torch.bfloat16] * 2
    assert half["high_res"].dtype == np.float32
    assert not np.array_equal(full["high_res"], half["high_res"])
    np.testing.assert_allclose(half["high_res"], full["high_res"], atol=0.03)


def test_train_cam_amp_on_cpu_trains_to_close_losses(tiny_dataset, tmp_path):
    losses = {}
    for amp in (False, True):
        cfg = load_config(None, [f"data.root={tiny_dataset}", f"run_dir={tmp_path / str(amp)}",
                                 "data.num_workers=0", "device=cpu",
                                 "model.backbone=resnet_tiny", "model.pretrained=none",
                                 "model.num_words=8", "train_cam.batch_size=4",
                                 "train_cam.max_steps=2", "train_cam.crop_size=64",
                                 f"train_cam.amp={str(amp).lower()}"])
        losses[amp] = train_cam.run(cfg)["losses"]
    assert losses[True] != losses[False]
    for key, value in losses[False].items():
        assert losses[True][key] == pytest.approx(value, rel=0.05, abs=0.02), key
