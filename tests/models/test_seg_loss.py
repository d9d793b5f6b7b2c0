"""The global-batch MSC loss: one split equals the per-batch CE of each term (an independent
reference); any split sums to the same loss and gradient (the property that makes ranks ×
accumulation steps equal one process)."""

import pytest
import torch
import torch.nn.functional as F

from vwe.models.deeplab import build_deeplab, resize_labels
from vwe.models.seg_loss import (
    msc_loss,
    msc_output_sizes,
    pixel_counts,
    split_msc_loss,
    target_sizes,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def random_outputs(batch=4, classes=5, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    sizes = [(9, 9), (5, 5), (7, 7), (9, 9)]  # L1, L0.5, L0.75, Lmax as MSC returns them
    return [torch.randn(batch, classes, *s, generator=generator, requires_grad=requires_grad)
            for s in sizes]


def random_labels(batch=4, classes=5, seed=1, ignore_band=True):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (batch, 33, 33), generator=generator)
    if ignore_band:  # crop padding: image 0 gets much more ignore than the others
        labels[0, :, 10:] = 255
        labels[1, -3:] = 255
    return labels


def reference_term(logits, labels, loss):
    """Mean CE over valid pixels, or ½(mean over B + mean over F), an empty part dropped."""
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    parts = [labels != 255] if loss == "ce" else [labels == 0, (labels != 0) & (labels != 255)]
    means = [per_pixel[mask].mean() for mask in parts if mask.any()]
    return torch.stack(means).mean()


def reference_msc_loss(outputs, labels, recipe, loss):
    """KZ: terms at each output's size, summed; RL: outputs upsampled to L1's size, averaged."""
    if recipe == "vwe_author":
        size = outputs[0].shape[-2:]
        outputs = [F.interpolate(o, size=size, mode="bilinear", align_corners=False)
                   for o in outputs]
    terms = [reference_term(o, resize_labels(labels, o.shape[-2:]), loss) for o in outputs]
    total = torch.stack(terms).sum()
    return total / len(terms) if recipe == "vwe_author" else total


@pytest.mark.parametrize("recipe", ["deeplab", "vwe_author"])
@pytest.mark.parametrize("loss", ["ce", "balanced_ce"])
def test_one_split_equals_the_reference(recipe, loss):
    outputs, labels = random_outputs(), random_labels()
    sizes = target_sizes(recipe, [o.shape[-2:] for o in outputs])
    counts = pixel_counts(labels, sizes, loss)
    got = split_msc_loss(outputs, labels, counts, recipe, loss)
    want = reference_msc_loss(outputs, labels, recipe, loss)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    torch.testing.assert_close(msc_loss(outputs, labels, recipe, loss), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("recipe", ["deeplab", "vwe_author"])
@pytest.mark.parametrize("loss", ["ce", "balanced_ce"])
def test_splits_sum_to_the_whole_batch(recipe, loss):
    outputs, labels = random_outputs(requires_grad=True), random_labels()
    whole = msc_loss(outputs, labels, recipe, loss)
    whole_grads = torch.autograd.grad(whole, outputs)
    sizes = target_sizes(recipe, [o.shape[-2:] for o in outputs])
    counts = pixel_counts(labels, sizes, loss)
    parts = [split_msc_loss([o[i:i + 1] for o in outputs], labels[i:i + 1], counts, recipe, loss)
             for i in range(labels.shape[0])]
    torch.testing.assert_close(sum(parts), whole, rtol=1e-5, atol=0)
    split_grads = torch.autograd.grad(sum(parts), outputs)
    for a, b in zip(split_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)
    # the naive mean of per-split means differs when the splits hold different pixel counts
    naive = sum(msc_loss([o[i:i + 1] for o in outputs], labels[i:i + 1], recipe, loss)
                for i in range(4)) / 4
    assert abs(float(naive.detach()) - float(whole.detach())) > 1e-3


@pytest.mark.parametrize("recipe", ["deeplab", "vwe_author"])
@pytest.mark.parametrize("loss", ["ce", "balanced_ce"])
def test_loss_at_input_scores_every_label_pixel(recipe, loss):
    """loss_at=input: every output upsampled bilinearly to the labels' 33×33 and scored against
    them unresized (KZ summed, RL averaged); splits still sum to the whole batch."""
    outputs, labels = random_outputs(requires_grad=True), random_labels()
    upsampled = [F.interpolate(o, size=(33, 33), mode="bilinear", align_corners=False)
                 for o in outputs]
    terms = [reference_term(o, labels, loss) for o in upsampled]
    want = torch.stack(terms).sum() / (len(terms) if recipe == "vwe_author" else 1)
    whole = msc_loss(outputs, labels, recipe, loss, at_input=True)
    torch.testing.assert_close(whole, want, rtol=1e-6, atol=0)
    assert abs(float((whole - msc_loss(outputs, labels, recipe, loss)).detach())) > 1e-3
    sizes = target_sizes(recipe, [o.shape[-2:] for o in outputs], (33, 33))
    assert sizes == [(33, 33)] * 4
    counts = pixel_counts(labels, sizes, loss)
    parts = [split_msc_loss([o[i:i + 1] for o in outputs], labels[i:i + 1], counts, recipe,
                            loss, at_input=True) for i in range(labels.shape[0])]
    torch.testing.assert_close(sum(parts), whole, rtol=1e-5, atol=0)


def test_balanced_ce_without_foreground_keeps_the_background_term():
    outputs = random_outputs(batch=2)
    labels = torch.zeros(2, 33, 33, dtype=torch.long)
    labels[1, :4] = 255
    counts = pixel_counts(labels, [o.shape[-2:] for o in outputs], "balanced_ce")
    assert (counts[:, 1] == 0).all() and (counts[:, 0] > 0).all()
    got = split_msc_loss(outputs, labels, counts, "deeplab", "balanced_ce")
    plain = msc_loss(outputs, labels, "deeplab", "ce")  # B alone = CE over valid pixels
    torch.testing.assert_close(got, plain, rtol=1e-6, atol=0)


def test_probe_gives_msc_sizes_and_leaves_batch_norm_alone():
    torch.manual_seed(0)
    model = build_deeplab(3, backbone="resnet_tiny", layout="torchvision")
    from vwe.models.backbone import use_batch_statistics

    use_batch_statistics(model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def side(n):  # conv1, max-pool and layer2 each map n to ⌊(n − 1)/2⌋ + 1 (torchvision layout)
        for _ in range(3):
            n = (n - 1) // 2 + 1
        return n

    expected = [side(65), side(int(65 * 0.5)), side(int(65 * 0.75)), side(65)]
    assert expected == [9, 4, 6, 9]
    assert msc_output_sizes(model, 65, torch.device("cpu")) == [(s, s) for s in expected]
    assert model.training and model.base.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
