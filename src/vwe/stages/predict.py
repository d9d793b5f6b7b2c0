"""`vwe predict CHECKPOINT INPUT… --out DIR`: a trained model on new images
(docs/segmentation.md#predict).

Everything the network needs comes from the checkpoint (architecture, classes, input
normalisation); no training config or dataset folder is involved. A DeepLab checkpoint gives
softmax probabilities (outer scales × flip, optional dense CRF); a CAM checkpoint gives CAM masks:
the classes the classifier finds (or a tags file names), their multi-scale CAMs against a constant
background score (`predict.bkg_score=auto`: Otsu's rule over the CAMs of all the inputs, chosen
once every CAM exists, written to `auto.json`). Outputs: `masks/<name>.png` (palette PNG),
`overlays/<name>.png` (image, mask colours, legend) and, when asked, `probs/<name>.npz`. Runs on
the per-image runner, so it resumes; `sources.json` keeps each input's (path, size, mtime): an
input changed since is predicted again.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vwe.config import CamConfig, Config
from vwe.data.folder import IMAGE_SUFFIXES, is_system_file, read_tags
from vwe.data.io import (
    image_size,
    load_npz,
    read_image,
    read_json,
    refuse_overwriting_inputs,
    save_label_png,
    save_npz,
    write_json_atomic,
)
from vwe.data.segmentation import normalize_pixels
from vwe.data.transforms import normalize, rescale
from vwe.engine import distributed as dist_utils
from vwe.engine.checkpoint import Trained, load_checkpoint, load_trained
from vwe.engine.distributed import DistContext
from vwe.engine.per_image import ImageOutputs, run_per_image
from vwe.engine.precision import autocast
from vwe.engine.records import Record, file_identity, flat_settings
from vwe.errors import VweError
from vwe.inference.cams import multiscale_cams
from vwe.inference.segmentation import crf_kwargs, predict_logits_batch
from vwe.inference.thresholds import auto_background_score, is_auto
from vwe.inference.trained_scale import (
    LongSideRange,
    at_trained_scale,
    long_side_factor,
    trained_long_side,
)
from vwe.metrics import cam_to_label
from vwe.models.deeplab import input_normalization
from vwe.refine.crf import crf_inference_prob
from vwe.visualize import prediction_overlay, save_image

log = logging.getLogger(__name__)

KINDS = ("deeplab", "cam_net")
SOURCES_FILE = "sources.json"
AUTO_FILE = "auto.json"
# predict.* keys that choose which files are written or how a run proceeds, not their values
OUTPUT_CHOICES = ("inputs", "out", "checkpoint", "batch_size", "overlay", "probs")


@dataclass(frozen=True)
class Predictor:
    """A trained network ready for new images: its kind, all class names (background first)."""

    trained: Trained
    kind: str
    class_names: list[str]
    codebook: torch.Tensor | None = None
    long_range: LongSideRange | None = None  # the long sides it trained at (trained_scale)


def run(cfg: Config) -> dict[str, Any]:
    return dist_utils.in_process_group(predict, cfg)


def predict(cfg: Config, ctx: DistContext) -> dict[str, Any]:
    settings = cfg.predict
    if not settings.out:
        raise VweError("vwe predict needs --out DIR: the folder for masks and overlays")
    sources = collect_inputs(settings.inputs)
    predictor = load_predictor(settings.checkpoint, cfg, ctx.device)
    out = Path(settings.out)
    auto = predictor.kind == "cam_net" and is_auto(settings.bkg_score)
    outputs = predict_outputs(out, settings.overlay, settings.probs, auto)
    names = sorted(sources)
    refuse_overwriting_inputs([file for name in names for file in outputs.done_files(name)],
                              sources.values(), "--out", "input image")
    if ctx.is_main:
        forget_changed_sources(out, sources, outputs)
    dist_utils.barrier(ctx)
    tags = read_tags(Path(settings.tags)) if settings.tags else None
    result = run_per_image("predict", names, outputs, predict_record(cfg, predictor.kind),
                           cfg.overwrite, ctx,
                           lambda todo: predict_images(cfg, predictor, sources, todo, out, tags,
                                                       auto))
    chosen = masks_at_auto_score(cfg, predictor, sources, names, out, ctx) if auto else None
    log.info("predict: %d images (%d computed) → %s", len(names), len(result.computed), out)
    return {"out": str(out), "images": len(names), "computed": len(result.computed),
            "kind": predictor.kind, "classes": predictor.class_names, "auto": chosen}


# ---- inputs ----

def collect_inputs(inputs: list[str]) -> dict[str, Path]:
    """{name: image file} from files, folders (their images, sorted) and glob patterns; two
    inputs with one name would overwrite each other's masks, so they are refused."""
    if not inputs:
        raise VweError("vwe predict needs at least one INPUT: an image, a folder or a glob")
    found: dict[str, Path] = {}
    for given in inputs:
        for path in _expand(given):
            if path.stem in found and found[path.stem].resolve() != path.resolve():
                raise VweError(f"two inputs are named '{path.stem}' ({found[path.stem]}, "
                               f"{path}); their masks would collide: rename one or predict "
                               "them into different --out folders")
            found[path.stem] = path
    return found


def _expand(given: str) -> list[Path]:
    path = Path(given)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file()
                        and p.suffix.lower() in IMAGE_SUFFIXES and not is_system_file(p))
        if not images:
            raise VweError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return images
    if path.is_file():
        return [path]
    if glob.has_magic(given):
        matched = sorted(Path(p) for p in glob.glob(given, recursive=True)
                         if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES
                         and not is_system_file(Path(p)))
        if not matched:
            raise VweError(f"pattern '{given}' matches no image file")
        return matched
    raise VweError(f"input {path} not found; pass image files, folders or glob patterns")


def forget_changed_sources(out: Path, sources: dict[str, Path],
                           outputs: ImageOutputs) -> None:
    """Remove the outputs of names whose input file changed since they were made, then record
    today's inputs (before any work, so an interrupted run still knows them)."""
    index = out / SOURCES_FILE
    earlier = read_json(index) if index.is_file() else {}
    current = {name: _source_stamp(path) for name, path in sources.items()}
    changed = [name for name, stamp in current.items()
               if name in earlier and earlier[name] != stamp]
    for name in changed:
        for path in outputs.done_files(name):
            path.unlink(missing_ok=True)
    if changed:
        log.info("predict: %d inputs changed since their masks were made; predicting them again",
                 len(changed))
    write_json_atomic(index, {**earlier, **current})


def _source_stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# ---- the network ----

def load_predictor(path: str, cfg: Config, device: torch.device) -> Predictor:
    """The checkpoint's network (DeepLab or CAM), on `device`, with its class names."""
    if not path:
        raise VweError("vwe predict needs a CHECKPOINT: train_seg/final.pt or train_cam/final.pt "
                       "of a run")
    arch = load_checkpoint(path).get("arch")
    kind = arch.get("name") if isinstance(arch, dict) else None
    if kind == "irnet":
        raise VweError(f"checkpoint {path} is IRNet's, which predicts boundaries, not masks; pass "
                       "a run's train_seg/final.pt (DeepLab) or train_cam/final.pt (CAMs)")
    overrides = None
    if kind == "deeplab" and not cfg.predict.msc:
        overrides = {"msc_scales": []}
    trained = load_trained(path, kind if kind in KINDS else "deeplab", overrides=overrides)
    names = [str(n) for n in trained.state.get("class_names", [])]
    num_classes = int(trained.state.get("num_classes", trained.kwargs.get("num_classes", 0)))
    if kind == "cam_net":
        names = ["background", *names]
        num_classes += 1
    if len(names) != num_classes:  # an imported checkpoint without names: numbered classes
        names = ["background", *[f"class {i}" for i in range(1, num_classes)]]
    codebook = trained.state.get("codebook")
    long_range = trained_long_side(trained.state) if cfg.predict.trained_scale else None
    return Predictor(Trained(trained.model.to(device), trained.state, trained.path), kind, names,
                     codebook.to(device) if codebook is not None else None, long_range)


def predict_record(cfg: Config, kind: str) -> Record:
    """What the masks depend on: the checkpoint and the keys that change their pixels."""
    keys = ["predict"]
    if kind == "deeplab" and cfg.predict.crf:
        keys.append("infer_seg.crf")
    if kind == "cam_net":
        keys += ["cam.flip_fusion", "cam.fuse_word_cam", "cam.high_res_resize"]
    exclude = [f"predict.{key}" for key in OUTPUT_CHOICES]
    exclude += ["infer_seg.crf.workers", "infer_seg.crf.enabled"]
    if kind == "deeplab":
        exclude += ["predict.bkg_score", "predict.class_threshold", "predict.tags"]
    else:
        exclude += [f"predict.{k}" for k in ("flip", "flip_fusion", "scale_fusion", "msc",
                                            "crf")]
    return Record("predict", flat_settings(cfg, keys, exclude),
                  {"checkpoint": file_identity(Path(cfg.predict.checkpoint))})


def predict_outputs(out: Path, overlay: bool, probs: bool, auto: bool = False) -> ImageOutputs:
    """The output folders; with an `auto` background score the CAMs (cams/) come first and mark
    an image done: its mask waits for the score chosen over every image."""
    folders = [out / "masks"] + ([out / "overlays"] if overlay else []) + \
        ([out / "probs"] if probs else []) + ([out / "cams"] if auto else [])

    def done_files(name: str) -> list[Path]:
        if auto:
            return [cam_file(out, name)]
        files = [out / "masks" / f"{name}.png"]
        if overlay:
            files.append(out / "overlays" / f"{name}.png")
        if probs:
            files.append(out / "probs" / f"{name}.npz")
        return files

    return ImageOutputs(tuple(folders), done_files, ("*.png", "*.npz"))


def cam_file(out: Path, name: str) -> Path:
    return out / "cams" / f"{name}.npz"


# ---- per image ----

def predict_images(cfg: Config, predictor: Predictor, sources: dict[str, Path],
                   names: list[str], out: Path, tags: dict[str, list[str]] | None,
                   auto: bool = False) -> Iterator[str]:
    """Masks (and overlays, probabilities) of `names`; yields each name once its files exist.
    With `auto`, only the CAMs: the masks follow once the score is chosen."""
    if predictor.kind == "deeplab":
        for batch in same_size_batches(sources, names, cfg.predict.batch_size):
            images = [read_image(sources[name]) for name in batch]
            for name, image, probs in zip(batch, images, deeplab_probs(cfg, predictor, images)):
                write_outputs(cfg, predictor, out, name, image, probs.argmax(0), {"probs": probs})
                yield name
    else:
        for name in names:
            image = read_image(sources[name])
            keys = cam_classes(cfg, predictor, image, name, tags)
            cams = image_cams(cfg, predictor, image, keys)
            if auto:
                save_npz(cam_file(out, name), keys=keys.astype(np.int64), high_res=cams)
            else:
                write_outputs(cfg, predictor, out, name, image,
                              cam_to_label(cams, keys, cfg.predict.bkg_score),
                              {"keys": keys.astype(np.int64) + 1, "cams": cams})
            yield name


def masks_at_auto_score(cfg: Config, predictor: Predictor, sources: dict[str, Path],
                        names: list[str], out: Path, ctx: DistContext) -> dict[str, Any]:
    """`predict.bkg_score=auto`: Otsu over the CAMs of every input (docs/method.md#auto-thresholds),
    then this rank's masks at that score; the value and its rule go to auto.json."""
    chosen = auto_background_score(cam_file(out, name) for name in names)
    chosen.pop("histogram")
    for name in dist_utils.shard(list(names), ctx):
        arrays = load_npz(cam_file(out, name))
        keys = np.asarray(arrays["keys"], np.int64)
        cams = np.asarray(arrays["high_res"], np.float32)
        write_outputs(cfg, predictor, out, name, read_image(sources[name]),
                      cam_to_label(cams, keys, chosen["bkg_score"]),
                      {"keys": keys + 1, "cams": cams})
    if ctx.is_main:
        write_json_atomic(out / AUTO_FILE, {**chosen, "images": len(names)})
    dist_utils.barrier(ctx)
    log.info("predict: auto background score %g (%s, %d images)", chosen["bkg_score"],
             chosen["rule"], len(names))
    return chosen


def same_size_batches(sources: dict[str, Path], names: list[str], batch_size: int
                      ) -> Iterator[list[str]]:
    """Consecutive runs of at most batch_size names whose images have one size."""
    if batch_size == 1:
        yield from ([name] for name in names)
        return
    batch: list[str] = []
    size = None
    for name in names:
        this = image_size(sources[name])
        if batch and (this != size or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(name)
        size = this
    if batch:
        yield batch


def deeplab_probs(cfg: Config, predictor: Predictor, images: list[np.ndarray]
                  ) -> list[np.ndarray]:
    """Softmax probabilities (C, H, W) float32 per image, CRF-refined when predict.crf."""
    settings = cfg.predict
    mean, std, bgr = input_normalization(predictor.trained.kwargs.get("layout", "caffe"))
    pixels = np.stack([normalize_pixels(image, mean, std, bgr) for image in images])
    model = predictor.trained.model
    with autocast(next(model.parameters()).device, settings.amp):
        scales = at_trained_scale(settings.scales, images[0].shape[:2], predictor.long_range)
        logits = predict_logits_batch(model, pixels, scales, settings.flip,
                                      settings.flip_fusion, settings.scale_fusion)
    probs = torch.softmax(logits, dim=1).cpu().numpy()
    if settings.crf:
        return [crf_inference_prob(image, p, **crf_kwargs(cfg.infer_seg.crf))
                for image, p in zip(images, probs)]
    return list(probs)


@torch.no_grad()
def cam_classes(cfg: Config, predictor: Predictor, image: np.ndarray, name: str,
                tags: dict[str, list[str]] | None) -> np.ndarray:
    """0-based foreground classes of one image: from the tags file when given, else those whose
    classifier score (sigmoid of the image logits) passes predict.class_threshold; at least the
    best one (every training image had a class)."""
    foreground = predictor.class_names[1:]
    if tags is not None:
        if name not in tags:
            raise VweError(f"tags file {cfg.predict.tags} has no line for '{name}'; add it or "
                           "leave predict.tags empty to let the classifier choose")
        unknown = [t for t in tags[name] if t not in foreground]
        if unknown:
            raise VweError(f"tags file {cfg.predict.tags}: '{name}' has tag '{unknown[0]}', "
                           f"which the checkpoint does not know ({', '.join(foreground)})")
        return np.asarray(sorted(foreground.index(t) for t in tags[name]), dtype=np.int64)
    model = predictor.trained.model
    device = next(model.parameters()).device
    factor = long_side_factor(image.shape[:2], predictor.long_range)
    seen = rescale(image, factor) if factor != 1.0 else image  # the objects at trained size
    pixels = torch.from_numpy(normalize(seen).transpose(2, 0, 1).copy())[None].to(device)
    with autocast(device, cfg.predict.amp):
        logits = model(pixels, codebook=predictor.codebook).img_logits[0]
    scores = torch.sigmoid(logits.float()).cpu()
    present = np.flatnonzero(scores.numpy() > cfg.predict.class_threshold)
    return present if present.size else np.asarray([int(scores.argmax())], dtype=np.int64)


def image_cams(cfg: Config, predictor: Predictor, image: np.ndarray, keys: np.ndarray
               ) -> np.ndarray:
    """The multi-scale + flip CAMs (K, H, W) float32 of the 0-based classes `keys`."""
    scales = at_trained_scale(cfg.predict.scales, image.shape[:2], predictor.long_range)
    cam_cfg = CamConfig(scales=scales, flip_fusion=cfg.cam.flip_fusion,
                        fuse_word_cam=cfg.cam.fuse_word_cam,
                        high_res_resize=cfg.cam.high_res_resize, amp=cfg.predict.amp)
    return multiscale_cams(predictor.trained.model, image, keys, cam_cfg,
                           predictor.codebook)["high_res"]


def write_outputs(cfg: Config, predictor: Predictor, out: Path, name: str, image: np.ndarray,
                  label: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
    """probs and overlay first, the mask last: the mask's presence marks the image done."""
    settings = cfg.predict
    label = label.astype(np.uint8)
    if settings.probs:
        names = np.asarray(predictor.class_names)
        save_npz(out / "probs" / f"{name}.npz", class_names=names,
                 **{k: v.astype(np.float32) if v.dtype.kind == "f" else v
                    for k, v in arrays.items()})
    if settings.overlay:
        save_image(out / "overlays" / f"{name}.png",
                   prediction_overlay(image, label, predictor.class_names, settings.alpha))
    save_label_png(out / "masks" / f"{name}.png", label)
