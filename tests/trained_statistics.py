"""Non-trivial batch-norm statistics, as a trained network has.

A fresh network's running means are 0 and variances 1, so folding batch norm into the convs or
evaluating it on the wrong path would go unnoticed; tests that compare two inference paths, and
benchmarks/versus_reference.py's checkpoint, set these first.
"""

from __future__ import annotations

import torch


def give_trained_statistics(net: torch.nn.Module) -> None:
    """Draw every BatchNorm2d's running mean from U(-0.1, 0.1) and variance from U(0.5, 1.5),
    in module order, from torch's global generator (callers seed it)."""
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
