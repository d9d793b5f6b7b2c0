"""Visual Words Encoder, codebook losses and the memory bank against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from vwe.models.visual_words import (
    LearnedCodebook,
    MemoryBankCodebook,
    decov_loss,
    encode_words,
    entropy_loss,
    flatten_pixels,
    memory_bank_ema,
    memory_bank_update,
    word_feature_sums,
    word_histogram,
    word_similarity,
)


def two_pixels() -> torch.Tensor:
    """(1, 2, 1, 2): pixel 0 = (3, 4), pixel 1 = (0, 0)."""
    return torch.tensor([[3.0, 0.0], [4.0, 0.0]]).view(1, 2, 1, 2)


CODEBOOK = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # normalised: e1, e2, −e1


def test_cosine_softmax_labels_and_presence_by_hand() -> None:
    sims = word_similarity(two_pixels(), CODEBOOK)
    assert torch.allclose(sims[0, :, 0, 0], torch.tensor([0.6, 0.8, -0.6]))
    assert torch.equal(sims[0, :, 0, 1], torch.zeros(3))  # zero feature: cosine 0 everywhere
    enc = encode_words(two_pixels(), CODEBOOK)
    e = torch.exp(torch.tensor([0.6, 0.8, -0.6]))
    assert torch.allclose(enc.probs[0, :, 0, 0], e / e.sum())
    assert torch.allclose(enc.probs[0, :, 0, 1], torch.full((3,), 1 / 3))
    assert enc.labels.tolist() == [[[1, 0]]]  # the uniform pixel ties → first word
    assert enc.presence.tolist() == [[1.0, 1.0, 0.0]]
    total = e / e.sum() + 1 / 3
    assert torch.allclose(word_histogram(enc.probs, "sum")[0], total)
    assert torch.allclose(word_histogram(enc.probs, "mean")[0], total / 2)


def test_temperature_divides_similarities() -> None:
    enc = encode_words(two_pixels(), CODEBOOK, temperature=0.5)
    e = torch.exp(torch.tensor([0.6, 0.8, -0.6]) / 0.5)
    assert torch.allclose(enc.probs[0, :, 0, 0], e / e.sum())


def test_exact_tie_goes_to_first_word() -> None:
    codebook = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])  # words 1 and 2 equal
    enc = encode_words(torch.tensor([5.0, 0.0]).view(1, 2, 1, 1), codebook)
    assert enc.labels.item() == 1


def test_detach_controls_gradient_to_features() -> None:
    for detach in (True, False):
        features = torch.rand(1, 2, 2, 2, requires_grad=True)
        codebook = torch.randn(3, 2, requires_grad=True)
        probs = encode_words(features, codebook, detach_features=detach).probs
        (probs[:, 0] * torch.arange(4.0).view(1, 2, 2)).sum().backward()
        assert codebook.grad is not None
        assert (features.grad is None) == detach


def test_learned_codebook_init_std() -> None:
    torch.manual_seed(0)
    book = LearnedCodebook(256, 2048)
    std = math.sqrt(1 / 3) / math.sqrt(2048)  # kaiming_normal_(a=√5), fan_in 2048: ≈ 0.01276
    assert book.weight.shape == (256, 2048)
    assert book.weight.std().item() == pytest.approx(std, rel=0.01)


def test_decov_by_hand_and_at_init() -> None:
    # rows centred: (−1, 0, 1), (1, −1, 0) → G = [[2, −1], [−1, 2]]
    codebook = torch.tensor([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    assert decov_loss(codebook).item() == pytest.approx(0.5 * (math.sqrt(10) - math.sqrt(8)))
    assert decov_loss(codebook.view(2, 3, 1, 1)).item() == pytest.approx(0.1669, abs=1e-4)
    torch.manual_seed(0)
    assert decov_loss(LearnedCodebook(256, 2048).weight).item() == pytest.approx(0.163, abs=0.005)


def test_entropy_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p = (¼, ¾) and (½, ½)
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_loss(logits).item() == pytest.approx((h1 + math.log(2)) / 2, abs=1e-6)
    assert entropy_loss(torch.zeros(3, 256)).item() == pytest.approx(math.log(256), abs=1e-4)


def test_memory_bank_ema_by_hand() -> None:
    codebook = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    features = torch.tensor([[2.0, 4.0], [0.0, 2.0]]).view(1, 2, 1, 2)  # pixels (2,0), (4,2)
    labels = torch.tensor([[[0, 0]]])
    new = memory_bank_update(codebook, features, labels, rho=0.5, first_step=False)
    mean0 = torch.tensor([6.0, 2.0]) / (2 + 1e-4)  # word 0: sum (6, 2) over 2 pixels
    expected = torch.stack([0.5 * mean0 + 0.5 * codebook[0], 0.5 * codebook[1],
                            0.5 * codebook[2]])  # words nobody picks decay toward 0
    assert torch.allclose(new, expected)


def test_feature_sums_split_across_ranks_add_up() -> None:
    features = torch.randn(4, 3, 2, 3)
    labels = torch.randint(0, 5, (4, 2, 3))
    sums, counts = word_feature_sums(features, labels, 5)
    parts = [word_feature_sums(features[i:i + 2], labels[i:i + 2], 5) for i in (0, 2)]
    assert torch.allclose(sums, parts[0][0] + parts[1][0])
    assert torch.equal(counts, parts[0][1] + parts[1][1])
    assert counts.sum().item() == 4 * 2 * 3
    # brute force: word 2's sum
    flat = features.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.allclose(sums[2], flat[labels.reshape(-1) == 2].sum(0))
    codebook = torch.randn(5, 3)
    assert torch.allclose(memory_bank_ema(codebook, sums, counts, 1.0),
                          sums / (counts + 1e-4)[:, None])


def test_first_step_draws_batch_features() -> None:
    features = torch.randn(2, 3, 2, 2)
    labels = torch.zeros(2, 2, 2, dtype=torch.long)
    new = memory_bank_update(torch.zeros(6, 3), features, labels, 1e-3, first_step=True,
                             generator=torch.Generator().manual_seed(7))
    index = torch.randint(8, (6,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(new, flatten_pixels(features)[index])


def test_memory_bank_codebook_steps_and_state() -> None:
    bank = MemoryBankCodebook(4, 3, rho=0.1, generator=torch.Generator().manual_seed(0))
    assert bank.words.shape == (4, 3)
    features = torch.rand(1, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [1, 3]]])
    first = bank.update(features, labels, torch.Generator().manual_seed(1)).clone()
    second = bank.update(features, labels)
    assert torch.allclose(second, memory_bank_update(first, features, labels, 0.1, False))
    copy = MemoryBankCodebook(4, 3)
    copy.load_state_dict(bank.state_dict())
    assert copy.steps_done == 2 and torch.equal(copy.words, bank.words) and copy.rho == 0.1
