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


def poly_factor(step: int, max_steps: int, power: float, update_every: int = 1) -> float:
    """(1 − t/T)^power with t = `step` rounded down to a multiple of `update_every`, counted
    from 0: the first update uses the initial rate. update_every=10 is KZ's DeepLab staircase."""
    t = step - step % update_every
    if max_steps <= 0 or t >= max_steps:
        return 0.0
    return (1.0 - t / max_steps) ** power


def set_poly_lr(optimizer: torch.optim.Optimizer, step: int, max_steps: int, power: float,
                update_every: int = 1) -> float:
    """Set every group's rate for update `step`; returns the factor applied.

    A group with `base_lr` and `lr_mult` (DeepLab's head groups) gets base_lr·factor·lr_mult,
    in that order, as KZ computes it; any other group initial_lr·factor.
    """
    factor = poly_factor(step, max_steps, power, update_every)
    for group in optimizer.param_groups:
        if "base_lr" in group and "lr_mult" in group:
            group["lr"] = group["base_lr"] * factor * group["lr_mult"]
        else:
            group["lr"] = group["initial_lr"] * factor
    return factor
