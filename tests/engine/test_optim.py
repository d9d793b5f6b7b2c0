"""Poly schedule and SGD groups against hand values."""

import pytest
import torch

from vwe.engine.optim import build_sgd, poly_factor, set_poly_lr


def test_poly_factor_by_hand():
    assert poly_factor(0, 3966, 0.9) == 1.0  # the first update uses the initial rate
    assert poly_factor(1983, 3966, 0.9) == pytest.approx(0.5**0.9)
    assert poly_factor(3965, 3966, 0.9) == pytest.approx((1 / 3966) ** 0.9)
    assert poly_factor(3966, 3966, 0.9) == 0.0


def test_groups_keep_their_rates_and_skip_frozen():
    a, b, frozen = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    frozen.requires_grad_(False)
    opt = build_sgd([{"params": [a, frozen], "lr": 0.01}, {"params": [b], "lr": 0.1}],
                    momentum=1e-4, weight_decay=1e-4)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert opt.param_groups[0]["momentum"] == pytest.approx(1e-4)
    set_poly_lr(opt, 5, 10, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**0.9)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * 0.5**0.9)


def test_one_step_matches_hand_update():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_sgd([{"params": [w], "lr": 0.1}], momentum=0.0, weight_decay=0.5)
    set_poly_lr(opt, 0, 4, 0.9)
    (w * torch.tensor([3.0, 1.0])).sum().backward()
    opt.step()
    # w − lr·(grad + wd·w)
    assert torch.allclose(w.detach(), torch.tensor([1 - 0.1 * (3 + 0.5), -2 - 0.1 * (1 - 1.0)]))
