"""bfloat16 autocast on CPU and CUDA alike: the one switch behind every stage's `amp` key.

bfloat16 keeps float32's exponent range, so no loss scaling is needed; losses, CAM sums, softmax
and the random walk stay in float32 (each caller casts the network's outputs with `.float()`).
"""

from __future__ import annotations

import torch


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """`torch.autocast` in bfloat16 on `device` (CPU or CUDA), or a no-op when not enabled."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
