"""Named bundles of settings: the method presets (paper, authors' code, VWL) and the DeepLab
training recipes. Both are plain tables applied by the loader; a key set explicitly wins."""

from __future__ import annotations

from typing import Any

# Method presets: named bundles of individual options (docs/method.md#presets).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "model.backbone": "resnet50",
        "model.word_logits_from": "hspp",
        "model.word_histogram": "mean",
        "model.codebook": "learned",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": True,
        "eval_cam.bkg_score": 0.14,
        "eval_cam.sweep": True,
    },
    "ijcai-code": {
        "model.backbone": "resnet50",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "learned",
        "model.hspp_cells": "floor_kernel",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.14,
        "eval_cam.sweep": False,
    },
    "vwl-l": {
        "model.backbone": "resnet101",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "learned",
        "model.detach_after_stage2": True,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 1.0, "decov": 1.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.13,
        "eval_cam.sweep": False,
    },
    "vwl-m": {
        "model.backbone": "resnet101",
        "model.word_logits_from": "gap",
        "model.word_histogram": "sum",
        "model.codebook": "memory_bank",
        "model.detach_after_stage2": False,
        "train_cam.losses": {"img": 1.0, "word": 1.0, "w2i": 0.0, "decov": 0.0, "entropy": 0.0},
        "cam.fuse_word_cam": False,
        "eval_cam.bkg_score": 0.13,
        "eval_cam.sweep": False,
    },
}


# DeepLab training recipes (docs/segmentation.md#training-recipes): the values a recipe gives the
# train_seg keys left null. The batch (10), crop (321) and iterations (20k) are shared.
SEG_RECIPES: dict[str, dict[str, Any]] = {
    "deeplab": {"lr": 2.5e-4, "weight_decay": 5e-4, "momentum": 0.9, "poly_power": 0.9,
                "poly_update_every": 10},
    "vwe_author": {"lr": 1e-3, "weight_decay": 5e-4, "momentum": 0.9, "poly_power": 0.9,
                   "poly_update_every": 1},
}
