"""The CAM network: ResNet + HSPP image classifier + Visual Words Encoder heads.

docs/method.md#presets and docs/method.md#network. Module names:
`backbone` (ResNet, torchvision names), `classifier` (W_img, authors' `classifier`),
`w2i` (word → image, authors' `fc_a`), `word_classifier` (authors' `fc_b`),
`codebook` (`LearnedCodebook`, authors' `VWE.centroid`; None for the memory bank).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vwe.config import LossWeights, ModelConfig
from vwe.config.valid import validate
from vwe.errors import VweError
from vwe.models.backbone import (
    CAM_DILATIONS,
    CAM_STRIDES,
    ResNet,
    build_backbone,
    use_batch_statistics,
)
from vwe.models.hybrid_pool import hybrid_pool
from vwe.models.visual_words import (
    LearnedCodebook,
    decov_loss,
    encode_words,
    entropy_loss,
    word_histogram,
)


@dataclass
class CamNetOutput:
    """Everything one training forward gives (shapes in comments)."""

    img_logits: Tensor  # p_img (N, C) from HSPP(F)
    w2i_logits: Tensor  # p_w2i (N, C) from the word histogram
    word_logits: Tensor  # p_word (N, k) from HSPP(F) or GAP(F)
    word_targets: Tensor  # y_word (N, k) float, no grad
    features: Tensor  # F (N, d, h, w), layer4 output, not detached
    word_probs: Tensor  # P (N, k, h, w)
    word_labels: Tensor  # Y (N, h, w) long


def _check_config(cfg: ModelConfig) -> None:
    """The ranges and choices ModelConfig declares, for a config built in code."""
    validate(cfg, "model.")


def _linear_1x1(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """A bias-free 1×1 conv applied to pooled (N, in) vectors: (N, out)."""
    return F.linear(x, conv.weight.flatten(1))


class CamNet(nn.Module):
    """VWE CAM network built from `ModelConfig`; output stride 16 (docs/method.md#backbone,
    docs/method.md#forward-pass)."""

    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.num_classes = num_classes
        self.num_words = cfg.num_words
        self.backbone = build_backbone(cfg.backbone, CAM_STRIDES, CAM_DILATIONS, cfg.pretrained)
        if not cfg.frozen_bn:
            use_batch_statistics(self.backbone)
        dim = self.backbone.out_channels[-1]
        self.feature_dim = dim
        self.classifier = nn.Conv2d(dim, num_classes, 1, bias=False)  # W_img
        self.w2i = nn.Conv2d(cfg.num_words, num_classes, 1, bias=False)  # W_w2i (fc_a)
        self.word_classifier = nn.Conv2d(dim, cfg.num_words, 1, bias=False)  # fc_b
        self.codebook = LearnedCodebook(cfg.num_words, dim) if cfg.codebook == "learned" else None
        self._freeze()

    def _freeze(self) -> None:
        """Stem frozen (docs/method.md#frozen-parts-and-detach); with the stage-2 detach,
        stem..layer2 can get no gradient anyway.

        Setting requires_grad=False there is numerically the authors' behaviour (their grads stay
        None, so SGD and weight decay skip them) and keeps DDP from waiting for them.
        """
        frozen = []
        if self.cfg.freeze_stem:
            frozen += self.backbone.stem_parameters()
        if self.cfg.detach_after_stage2:
            frozen += self.backbone.parameters_through(2)
        for p in frozen:
            p.requires_grad_(False)

    def features(self, images: Tensor) -> Tensor:
        """F = last level (N, d, ⌈H/16⌉, ⌈W/16⌉); stage 2 detached when configured
        (docs/method.md#forward-pass). A timm trunk runs whole: its levels up to stride 8 hold
        no trainable parameter then, which gives them no gradient just the same."""
        bb = self.backbone
        if not isinstance(bb, ResNet):
            return bb(images)[-1]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.detach_after_stage2):
            x = bb.layer2(bb.layer1(bb.stem(images)))
        if self.cfg.detach_after_stage2:
            x = x.detach()
        return bb.layer4(bb.layer3(x))

    def _codebook(self, codebook: Tensor | None) -> Tensor:
        """The (k, d) codebook: the learned parameter, or the memory bank the caller passes."""
        if codebook is None:
            if self.codebook is None:
                raise ValueError("a memory-bank CamNet needs the codebook passed to forward")
            return self.codebook.weight
        if codebook.shape != (self.num_words, self.feature_dim):
            raise ValueError(f"codebook must be ({self.num_words}, {self.feature_dim}), "
                             f"got {tuple(codebook.shape)}")
        return codebook

    def forward(self, images: Tensor, codebook: Tensor | None = None) -> CamNetOutput:
        """Training forward: image, word→image and word logits plus word targets
        (docs/method.md#forward-pass)."""
        cfg = self.cfg
        feats = self.features(images)
        if cfg.pooling == "hspp":
            pooled = hybrid_pool(feats, cfg.hspp_gamma, cfg.hspp_levels, cfg.hspp_cells)  # f_hspp
        else:  # GAP: the baseline of Table 1 (docs/method.md#ablations)
            pooled = feats.mean(dim=(2, 3))
        img_logits = _linear_1x1(pooled, self.classifier)
        words = encode_words(feats, self._codebook(codebook).to(feats), cfg.temperature,
                             cfg.detach_word_features)
        histogram = word_histogram(words.probs, cfg.word_histogram)  # f_word (N, k)
        w2i_logits = _linear_1x1(histogram, self.w2i)
        word_input = pooled if cfg.word_logits_from == "hspp" else feats.mean(dim=(2, 3))
        word_logits = _linear_1x1(word_input, self.word_classifier)
        return CamNetOutput(img_logits=img_logits, w2i_logits=w2i_logits,
                            word_logits=word_logits, word_targets=words.presence,
                            features=feats, word_probs=words.probs, word_labels=words.labels)

    def cam_maps(self, images: Tensor, codebook: Tensor | None = None,
                 with_word_cam: bool = False) -> tuple[Tensor, Tensor | None]:
        """M_img = ReLU(W_img·F) and, when asked, M_word = ReLU(Σ_j W_w2i[j,c] P_j) (N, C, h, w).

        M_word is our reading of the paper (docs/method.md); the authors' code has only M_img.
        """
        feats = self.features(images)
        img_cam = F.relu(F.conv2d(feats, self.classifier.weight))
        if not with_word_cam:
            return img_cam, None
        words = encode_words(feats, self._codebook(codebook).to(feats), self.cfg.temperature,
                             self.cfg.detach_word_features)
        return img_cam, F.relu(F.conv2d(words.probs, self.w2i.weight))

    def new_parameters(self) -> list[nn.Parameter]:
        """Heads and learned codebook: the authors' `newly_added` group
        (docs/method.md#heads-and-initialisation)."""
        modules = [self.classifier, self.w2i, self.word_classifier]
        modules += [self.codebook] if self.codebook is not None else []
        return [p for m in modules for p in m.parameters() if p.requires_grad]

    def param_groups(self, lr: float, new_lr_mult: float, weight_decay: float) -> list[dict]:
        """Group 0: trainable backbone at lr; group 1: new layers at lr·mult
        (docs/method.md#heads-and-initialisation, docs/method.md#optimiser)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [
            {"params": backbone, "lr": lr, "weight_decay": weight_decay, "name": "backbone"},
            {"params": self.new_parameters(), "lr": lr * new_lr_mult,
             "weight_decay": weight_decay, "name": "new"},
        ]


def multilabel_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """MLSM: mean over classes and batch of −[y log σ(z) + (1 − y) log σ(−z)]
    (docs/method.md#gradient-routing)."""
    return F.multilabel_soft_margin_loss(logits, targets.to(logits.dtype))


def cam_losses(output: CamNetOutput, labels: Tensor, weights: LossWeights,
               codebook: Tensor | None = None) -> dict[str, Tensor]:
    """The CAM losses and their weighted `total` (docs/method.md#decov-and-entropy,
    docs/method.md#losses).

    A term with weight 0 is still computed for logging, but detached, so it builds no graph and
    sends no gradient (the authors log loss2 in VWL-M and entropy in VWL-L without adding them).
    `decov` needs the learned codebook (k, d); it is left out when `codebook` is None.
    """
    terms = {
        "img": lambda: multilabel_loss(output.img_logits, labels),
        "word": lambda: multilabel_loss(output.word_logits, output.word_targets),
        "w2i": lambda: multilabel_loss(output.w2i_logits, labels),
        "entropy": lambda: entropy_loss(output.word_logits),
    }
    if codebook is not None:
        terms["decov"] = lambda: decov_loss(codebook)
    elif weights.decov != 0:
        raise VweError("train_cam.losses.decov > 0 needs a learned codebook "
                       "(model.codebook=learned)")
    losses: dict[str, Tensor] = {}
    total = output.img_logits.new_zeros(())
    for name, compute in terms.items():
        weight = float(getattr(weights, name))
        if weight == 0:
            with torch.no_grad():
                losses[name] = compute()
        else:
            losses[name] = compute()
            total = total + weight * losses[name]
    losses["total"] = total
    return losses
