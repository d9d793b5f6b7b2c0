"""`vwe import-weights`: the authors' released checkpoints into this project's format.

Their files come from `nn.DataParallel` (`module.` prefix) and store every tensor under several
aliases (docs/method.md#state-dict-layout); `vwe.models.authors_weights` checks and maps them.
The result records its preset, so `make-cam preset=<format> cam.checkpoint=DST` reproduces the
authors' CAM inference.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from vwe.config import Config, load_config
from vwe.data.voc import VOC_CLASSES
from vwe.engine.checkpoint import load_checkpoint, save_checkpoint
from vwe.engine.weights import read_state_dict
from vwe.errors import VweError
from vwe.models.authors_weights import convert_authors_state_dict
from vwe.models.deeplab import looks_like_coco
from vwe.models.deeplab_caffe import map_caffe_state_dict
from vwe.models.registry import arch_entry

log = logging.getLogger(__name__)


def import_deeplab_caffe(src: Path, dst: Path) -> dict:
    """A KZ-converted Caffe DeepLab init (ImageNet or COCO) mapped key by key to our DeepLabV2.

    Any missing backbone tensor is an error. A classifier head (`fc.*`, 91 classes for COCO) is
    kept beside the mapped keys so the segmentation stage still recognises a COCO init.
    """
    state = read_state_dict(src)
    mapped = map_caffe_state_dict(state, None, str(src))
    head = {k.removeprefix("module."): v for k, v in state.items()
            if k.removeprefix("module.").startswith("fc.")}
    save_checkpoint(dst, {**mapped, **head})
    log.info("import-weights: %s (deeplab-caffe, %d tensors) → %s; use it with seg.layout=caffe "
             "seg.pretrained=%s", src, len(mapped), dst, dst)
    return {"checkpoint": str(dst), "format": "deeplab-caffe", "tensors": len(mapped),
            "coco_init": looks_like_coco(src, state)}


def run(cfg: Config) -> dict:
    spec = cfg.import_weights
    if not spec.src or not spec.dst:
        raise VweError("import-weights needs SRC and DST: vwe import-weights --format "
                       "ijcai-code resnet_cam_final.pth weights/ijcai.pt")
    src, dst = Path(spec.src), Path(spec.dst)
    if spec.format == "deeplab-caffe":
        return import_deeplab_caffe(src, dst)
    state = load_checkpoint(src)
    state = state.get("state_dict", state)
    ours, preset = convert_authors_state_dict(state, spec.format, source=str(src))
    preset_cfg = load_config(None, [f"preset={preset}"])
    num_classes = int(ours["classifier.weight"].shape[0])
    class_names = list(VOC_CLASSES) if num_classes == len(VOC_CLASSES) else \
        [f"class{i}" for i in range(num_classes)]
    model = OmegaConf.to_container(OmegaConf.structured(preset_cfg.model))
    model.pop("pretrained")
    if "codebook.weight" in ours:  # k as the file holds it
        model["num_words"] = int(ours["codebook.weight"].shape[0])
    save_checkpoint(dst, {
        "model": ours, "preset": preset, "step": 0, "source": str(src),
        "arch": arch_entry("cam_net", {"num_classes": num_classes, **model}),
        "num_classes": num_classes, "class_names": class_names,
    })
    log.info("import-weights: %s (%s, %d tensors) → %s; use it with `vwe make-cam preset=%s "
             "cam.checkpoint=%s`", src, spec.format, len(ours), dst, preset, dst)
    return {"checkpoint": str(dst), "preset": preset, "tensors": len(ours)}
