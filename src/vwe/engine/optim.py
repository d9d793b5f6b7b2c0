"""Poly-schedule SGD, as the CAM, IRN and DeepLab stages all train."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def build_sgd(param_groups: Sequence[dict], momentum: float,
              weight_decay: float) -> torch.optim.SGD:
    """SGD whose groups keep their own `lr` (recorded as `initial_lr`) and weight decay.

    The authors ran with momentum 1e-4 (IRNet's PolyOptimizer passes weight decay where SGD
    expects momentum); the configs make that explicit.
    """
    groups = []
    for group in param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        if params:
            groups.append({**group, "params": params, "initial_lr": group["lr"],
                           "weight_decay": group.get("weight_decay", weight_decay)})
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum)


def poly_factor(step: int, max_steps: int, power: float) -> float:
    """(1 − t/T)^power with t counted from 0: the first update uses the initial rate."""
    if max_steps <= 0 or step >= max_steps:
        return 0.0
    return (1.0 - step / max_steps) ** power


def set_poly_lr(optimizer: torch.optim.Optimizer, step: int, max_steps: int, power: float) -> float:
    """Set every group's rate for update `step`; returns the factor applied."""
    factor = poly_factor(step, max_steps, power)
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return factor
