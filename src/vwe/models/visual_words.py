"""Visual Words Encoder, codebooks and codebook losses (docs/method.md#network).

Shapes: features F (N, d, h, w); codebook C (k, d); word probabilities P (N, k, h, w).
Temperature convention: P = softmax_j(S_ij / temperature); temperature 1 is the authors' code
(their v2 multiplies by τ = 1, the same thing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORM_EPS = 1e-12  # F.normalize's clamp, as in the authors' `_cosine`
COUNT_EPS = 1e-4  # memory-bank mean denominator (docs/method.md#memory-bank-codebook)
ENTROPY_EPS = 1e-8  # v2 entropy_loss (docs/method.md#decov-and-entropy)


@dataclass
class WordEncoding:
    """Output of the encoder: soft assignments, hard labels and presence targets."""

    probs: Tensor  # P (N, k, h, w), softmax over words
    labels: Tensor  # Y (N, h, w) long, argmax word per pixel (ties → first index)
    presence: Tensor  # y_word (N, k) float in {0, 1}, no grad


def init_codebook(k: int, d: int, generator: torch.Generator | None = None) -> Tensor:
    """kaiming_normal_(a=√5) on a (k, d, 1, 1) weight: N(0, 1/(3d)) entries
    (docs/method.md#heads-and-initialisation)."""
    gain = math.sqrt(2.0 / (1.0 + 5.0))
    return torch.randn(k, d, generator=generator) * (gain / math.sqrt(d))


class LearnedCodebook(nn.Module):
    """The learned codebook (root, VWL-L): a (k, d) parameter trained by the w2i loss (+ decov)."""

    def __init__(self, num_words: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_words, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: kaiming_normal_(a=√5) on the (k, d, 1, 1) view, fan_in d
        (docs/method.md#heads-and-initialisation)."""
        if self.weight.is_meta:  # built for a checkpoint (docs/performance.md#start-up)
            return
        nn.init.kaiming_normal_(self.weight.data.view(*self.weight.shape, 1, 1), a=math.sqrt(5))

    def forward(self) -> Tensor:
        return self.weight


def word_similarity(features: Tensor, codebook: Tensor, detach_features: bool = True) -> Tensor:
    """S_ij = cosine(F_i, C_j) (N, k, h, w); features detached after normalising
    (docs/method.md#visual-words-encoder)."""
    feats = F.normalize(features, dim=1, eps=NORM_EPS)
    if detach_features:
        feats = feats.detach()
    words = F.normalize(codebook, dim=1, eps=NORM_EPS)
    return torch.einsum("ndhw,kd->nkhw", feats, words)


def word_presence(labels: Tensor, num_words: int) -> Tensor:
    """y_word (N, k): 1 where the word is the label of at least one pixel of the image."""
    presence = torch.zeros(labels.shape[0], num_words, device=labels.device)
    return presence.scatter_(1, labels.flatten(1), 1.0)


def encode_words(features: Tensor, codebook: Tensor, temperature: float = 1.0,
                 detach_features: bool = True) -> WordEncoding:
    """P = softmax(S / temperature) over words, Y = argmax P, y_word presence (Eq. 1,
    docs/method.md#visual-words-encoder)."""
    probs = torch.softmax(word_similarity(features, codebook, detach_features) / temperature, 1)
    with torch.no_grad():
        labels = probs.argmax(dim=1)  # torch.argmax returns the first maximal index
        presence = word_presence(labels, codebook.shape[0])
    return WordEncoding(probs=probs, labels=labels, presence=presence)


def word_histogram(probs: Tensor, mode: str = "mean") -> Tensor:
    """f_word (N, k): mean (paper) or sum (authors' code, docs/method.md#visual-words-encoder) of P
    over pixels."""
    if mode == "mean":
        return probs.mean(dim=(2, 3))
    if mode == "sum":
        return probs.sum(dim=(2, 3))
    raise ValueError(f"word histogram mode must be mean or sum, got {mode!r}")


def decov_loss(codebook: Tensor) -> Tensor:
    """v2 decov: ½(‖G‖_F − ‖diag G‖₂), G = C_c C_cᵀ of the row-centred raw codebook
    (docs/method.md#decov-and-entropy)."""
    centred = codebook.flatten(1) - codebook.flatten(1).mean(dim=1, keepdim=True)
    gram = centred @ centred.T  # (k, k)
    return 0.5 * (torch.linalg.norm(gram) - torch.linalg.norm(torch.diagonal(gram)))


def entropy_loss(word_logits: Tensor) -> Tensor:
    """v2 entropy: batch mean of −Σ q log q with q = softmax(logits) + 1e-8
    (docs/method.md#decov-and-entropy)."""
    q = torch.softmax(word_logits, dim=-1) + ENTROPY_EPS
    return -(q * torch.log(q)).sum(dim=-1).mean()


# ---- memory-bank codebook (VWL-M, docs/method.md#memory-bank-codebook) ---------------------------


def flatten_pixels(features: Tensor) -> Tensor:
    """(N, d, h, w) → (N·h·w, d) in (n, y, x) order, as the authors' update does."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def word_feature_sums(features: Tensor, word_labels: Tensor, num_words: int
                      ) -> tuple[Tensor, Tensor]:
    """Per-word sums of assigned raw features (k, d) and pixel counts (k,), to all-reduce."""
    feats = flatten_pixels(features.detach()).float()
    labels = word_labels.reshape(-1).to(feats.device)
    sums = torch.zeros(num_words, feats.shape[1], device=feats.device)
    sums.index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=num_words).to(feats.dtype)
    return sums, counts


def memory_bank_ema(codebook: Tensor, sums: Tensor, counts: Tensor, rho: float) -> Tensor:
    """C ← ρ·m + (1 − ρ)·C with m_j = sum_j / (count_j + 1e-4); unpicked words get m_j = 0."""
    means = sums / (counts + COUNT_EPS).unsqueeze(1)
    return rho * means.to(codebook) + (1.0 - rho) * codebook


def random_feature_codebook(features: Tensor, num_words: int,
                            generator: torch.Generator | None = None) -> Tensor:
    """k raw feature vectors drawn uniformly with replacement from the batch (step-0 reset)."""
    feats = flatten_pixels(features.detach())
    index = torch.randint(feats.shape[0], (num_words,), generator=generator)
    return feats[index.to(feats.device)].clone()


def memory_bank_update(codebook: Tensor, features: Tensor, word_labels: Tensor, rho: float,
                       first_step: bool, generator: torch.Generator | None = None) -> Tensor:
    """One memory-bank step (docs/method.md#memory-bank-codebook, arg-max assignment); at step 0
    random batch features win."""
    if first_step:  # the authors' first EMA update is overwritten by this reset
        return random_feature_codebook(features, codebook.shape[0], generator).to(codebook)
    sums, counts = word_feature_sums(features, word_labels, codebook.shape[0])
    return memory_bank_ema(codebook, sums.to(codebook.device), counts.to(codebook.device), rho)


class MemoryBankCodebook:
    """A (k, d) codebook kept outside the model (VWL-M): no gradient, not in its state dict."""

    def __init__(self, num_words: int, dim: int, rho: float = 1e-3,
                 generator: torch.Generator | None = None) -> None:
        self.rho = rho
        self.words = init_codebook(num_words, dim, generator)
        self.steps_done = 0

    def update(self, features: Tensor, word_labels: Tensor,
               generator: torch.Generator | None = None) -> Tensor:
        """Apply one step with this batch's features and arg-max labels; returns the codebook."""
        self.words = memory_bank_update(self.words, features, word_labels, self.rho,
                                        self.steps_done == 0, generator)
        self.steps_done += 1
        return self.words

    def state_dict(self) -> dict[str, Tensor | int | float]:
        """What a checkpoint needs to resume the bank."""
        return {"words": self.words.clone(), "steps_done": self.steps_done, "rho": self.rho}

    def load_state_dict(self, state: dict) -> None:
        """Restore from `state_dict()` output."""
        self.words = state["words"].clone()
        self.steps_done = int(state["steps_done"])
        self.rho = float(state.get("rho", self.rho))
