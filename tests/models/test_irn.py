"""IRNet network, affinity targets and losses against hand-computed values
(docs/refinement.md#irnet-training, docs/refinement.md#random-walk)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trained_statistics import give_trained_statistics
from vwe.models.irn import (
    EPS,
    IRNet,
    affinity_from_edge,
    affinity_targets,
    edge_map,
    irn_loss_terms,
    irn_total_loss,
    path_tensors,
)
from vwe.refine.path_index import PathIndex
from vwe.refine.random_walk import path_affinity

# Radius 2 on a 3×4 grid: directions (0,1), (1,0), (1,−1), (1,1); sources (0,1) (0,2) (1,1) (1,2).
LABEL = np.array([[0, 0, 1, 1],
                  [0, 255, 1, 2],
                  [0, 0, 2, 2]])
EDGE_PROB = np.array([[0.1, 0.2, 0.05, 0.05],
                      [0.05, 0.5, 0.05, 0.3],
                      [0.05, 0.05, 0.9, 0.05]])


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def model(single_torch_thread) -> IRNet:
    torch.manual_seed(0)
    return IRNet("resnet_tiny")


def logits(prob: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.log(prob / (1 - prob)), dtype=torch.float32)


def test_forward_shapes_and_frozen_backbone(model):
    model.train()
    assert not model.backbone.training
    edge, disp = model(torch.randn(2, 3, 64, 80))
    assert edge.shape == (2, 1, 16, 20) and disp.shape == (2, 2, 16, 20)
    (edge.sum() + disp.sum()).backward()
    assert all(not p.requires_grad and p.grad is None for p in model.backbone.parameters())
    branch = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert branch and all(p.grad is not None for p in branch)
    model.zero_grad()


def test_mean_shift_only_in_eval(model):
    x = torch.randn(1, 3, 32, 48)
    model.mean_shift.running_mean.copy_(torch.tensor([1.0, -2.0]))
    with torch.no_grad():
        _, train_disp = model.train()(x)
        _, eval_disp = model.eval()(x)
    model.mean_shift.running_mean.zero_()
    torch.testing.assert_close(eval_disp, train_disp - torch.tensor([1.0, -2.0]).view(1, 2, 1, 1))
    assert "disp_head.2.running_mean" in model.state_dict()


def test_param_groups(model):
    groups = model.param_groups(0.1, 1e-4)
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    assert all(g["weight_decay"] == 1e-4 for g in groups)
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(ids) == len(set(ids)) and set(ids) == trainable
    edge_only = IRNet("resnet_tiny", with_displacement=False)
    assert edge_only(torch.randn(1, 3, 32, 32))[1] is None
    assert len(edge_only.param_groups(0.1, 1e-4)) == 1


@pytest.mark.parametrize("height, width", [(61, 77), (70, 33)])
def test_edge_map_averages_flip_logits(model, height, width):
    model.eval()
    image = torch.randn(1, 3, height, width)
    pair = torch.cat([image, image.flip(-1)])
    out = edge_map(model, pair)
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    assert out.shape == (h, w)
    padded = F.pad(pair, (0, 16 * math.ceil(width / 16) - width, 0, 16 * math.ceil(height / 16)
                          - height))
    with torch.no_grad():
        b = model(padded)[0][:, 0, :h, :w]
    torch.testing.assert_close(out, torch.sigmoid((b[0] + b[1].flip(-1)) / 2))
    assert edge_map(model, pair, min_size=96).shape == (h, w)


def test_affinity_from_edge_by_hand():
    aff = affinity_from_edge(logits(EDGE_PROB)[None, None], PathIndex(2, (3, 4)))
    expected = [[0.8, 0.95, 0.5, 0.7],
                [0.5, 0.95, 0.5, 0.1],
                [0.5, 0.5, 0.5, 0.1],
                [0.5, 0.7, 0.1, 0.1]]
    torch.testing.assert_close(aff[0], torch.tensor(expected), atol=1e-6, rtol=0)


def test_affinity_from_edge_matches_numpy_walk_affinity():
    index = PathIndex(5, (13, 17))
    prob = np.random.default_rng(0).uniform(0.01, 0.99, (13, 17))
    aff = affinity_from_edge(logits(prob)[None, None].repeat(2, 1, 1, 1), path_tensors(index))
    expected = path_affinity(prob.reshape(-1), index)
    np.testing.assert_allclose(aff[1].numpy(), expected, atol=1e-6)


def test_affinity_targets_by_hand():
    targets = affinity_targets(LABEL, PathIndex(2, (3, 4)))
    zero = [0, 0, 0, 0]
    expected = {
        "bg_pos": [zero, zero, [1, 0, 0, 0], zero],
        "fg_pos": [[0, 1, 0, 0], [0, 1, 0, 0], zero, zero],
        "neg": [[1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1], [1, 1, 0, 1]],
    }
    for key, value in expected.items():
        assert targets[key].dtype == torch.float32 and targets[key].shape == (1, 4, 4)
        torch.testing.assert_close(targets[key][0], torch.tensor(value, dtype=torch.float32))


def hand_displacement() -> torch.Tensor:
    """D = (row, col / 2): pair displacement D(src) − D(dst) = (−dy, −dx/2)."""
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    return torch.stack([rows, cols / 2])[None]


def test_losses_by_hand():
    index = PathIndex(2, (3, 4))
    edge = torch.full((1, 1, 3, 4), math.log(0.2 / 0.8))  # every a = 0.8
    sums, counts = irn_loss_terms(edge, hand_displacement(), affinity_targets(LABEL, index), index)
    assert {k: v.item() for k, v in counts.items()} == {"bg_pos": 1, "fg_pos": 2, "neg": 7}
    l_pos, l_neg = -math.log(0.8 + EPS), -math.log(0.2 + EPS)
    total, terms = irn_total_loss(sums, counts)
    expected = {
        "pos": 0.5 * l_pos / (1 + EPS) + 0.5 * 2 * l_pos / (2 + EPS),
        "neg": 7 * l_neg / (7 + EPS),
        "dp_fg": (1.5 + 2.0) / (2 * 2 + EPS),  # |(−dy,−dx/2) − (dy,dx)| = 2|dy| + 1.5|dx|
        "dp_bg": 1.5 / (2 * 1 + EPS),  # direction (1,−1): |−1| + |0.5|
    }
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-5)
    expected_total = (expected["pos"] + expected["neg"]) / 2 + (
        expected["dp_fg"] + expected["dp_bg"]) / 2
    assert total.item() == pytest.approx(expected_total, rel=1e-5)
    sums, _ = irn_loss_terms(edge, None, affinity_targets(LABEL, index), index)
    assert sums["dp_fg"].item() == sums["dp_bg"].item() == 0


def test_whole_batch_normalisation_and_rank_split():
    index = PathIndex(3, (8, 9))
    paths = path_tensors(index)
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, 8, 9), generator=gen)
    labels[0] = 0
    labels[1, :4] = 255
    edge = torch.randn(4, 1, 8, 9, generator=gen, requires_grad=True)
    disp = torch.randn(4, 2, 8, 9, generator=gen, requires_grad=True)
    targets = affinity_targets(labels, paths)

    sums, counts = irn_loss_terms(edge, disp, targets, paths)
    total, _ = irn_total_loss(sums, counts)
    full_grad = torch.autograd.grad(total, (edge, disp))

    # two "ranks" of 2 images: all-reduced counts, local sums, scale = world size, mean of grads
    parts = [irn_loss_terms(edge[i : i + 2], disp[i : i + 2],
                            {k: v[i : i + 2] for k, v in targets.items()}, paths) for i in (0, 2)]
    global_counts = {k: parts[0][1][k] + parts[1][1][k] for k in counts}
    rank_totals = [irn_total_loss(s, global_counts, scale=2)[0] for s, _ in parts]
    split_grad = torch.autograd.grad(sum(rank_totals) / 2, (edge, disp))
    assert (sum(rank_totals) / 2).item() == pytest.approx(total.item(), rel=1e-5)
    for a, b in zip(full_grad, split_grad):
        torch.testing.assert_close(a, b)
    # a per-image mean would differ: the normalisation is over the whole batch
    per_image = [irn_total_loss(*irn_loss_terms(edge[i : i + 1], disp[i : i + 1],
                                                {k: v[i : i + 1] for k, v in targets.items()},
                                                paths))[0] for i in range(4)]
    assert (sum(per_image) / 4).item() != pytest.approx(total.item(), rel=1e-3)


def test_pseudo_labels_network_folds_batch_norm_to_the_same_boundaries():
    """pseudo-labels' IRNet (backbone BN folded, docs/performance.md#make-cam) gives the
    boundary map and displacements of the loaded network."""
    from vwe.stages.pseudo_labels import prepare_irnet

    torch.manual_seed(0)
    net = IRNet("resnet18").eval()
    give_trained_statistics(net.backbone)
    image = torch.randn(1, 3, 50, 67)
    pair = torch.cat([image, image.flip(-1)])
    want_edge = edge_map(net, pair, min_size=64)
    with torch.no_grad():
        want_disp = net(pair)[1]
    folded = prepare_irnet(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.backbone.modules())
    torch.testing.assert_close(edge_map(folded, pair, min_size=64), want_edge, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(folded(pair)[1], want_disp, rtol=1e-4, atol=1e-5)


def test_loss_gradients_equal_the_indexing_formulation():
    """affinity_from_edge / pair_displacement gather with index_select and max(dim)
    (docs/performance.md#training-steps); without ties that is the same loss and the same
    gradient as plain indexing with amax, written out here as the second path."""
    paths = path_tensors(PathIndex(4, (12, 14)))
    torch.manual_seed(0)
    edge = torch.randn(2, 1, 12, 14, requires_grad=True)
    disp = torch.randn(2, 2, 12, 14, requires_grad=True)
    label = torch.from_numpy(np.random.default_rng(0).choice([0, 1, 2, 255], (2, 12, 14)))
    targets = affinity_targets(label, paths)
    sums, counts = irn_loss_terms(edge, disp, targets, paths)
    total, _ = irn_total_loss(sums, counts)
    got = torch.autograd.grad(total, (edge, disp))

    boundary = torch.sigmoid(edge).reshape(2, -1)
    aff = 1 - torch.cat([boundary[:, i.reshape(-1)].view(2, *i.shape).amax(dim=2)
                         for i in paths.path_indices], dim=1)
    flat = disp.reshape(2, 2, -1)
    pair = flat[:, :, paths.src_indices][:, :, None, :] - \
        flat[:, :, paths.dst_indices.reshape(-1)].view(2, 2, *paths.dst_indices.shape)
    direction = paths.directions.t().float()[None, :, :, None]
    bg, fg, neg = targets["bg_pos"], targets["fg_pos"], targets["neg"]
    ref_sums = {"bg_pos": (bg * -torch.log(aff + EPS)).sum(),
                "fg_pos": (fg * -torch.log(aff + EPS)).sum(),
                "neg": (neg * -torch.log(1 + EPS - aff)).sum(),
                "dp_fg": ((pair - direction).abs() * fg[:, None]).sum(),
                "dp_bg": (pair.abs() * bg[:, None]).sum()}
    ref_total, _ = irn_total_loss(ref_sums, counts)
    want = torch.autograd.grad(ref_total, (edge, disp))
    torch.testing.assert_close(total, ref_total, rtol=1e-6, atol=0)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
