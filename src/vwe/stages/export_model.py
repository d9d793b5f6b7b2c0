"""`vwe export CHECKPOINT --format onnx|torchscript OUT`: the trained DeepLab as one file that
runs without vwe, and `OUT.json` saying how to feed it (docs/segmentation.md#exported-models).

What is exported is `models.deeplab.PixelSegmenter` around the checkpoint's network: RGB pixels
0–255 as float32 (N, 3, H, W) in, logits (N, C, H, W) at the input size out, N, H and W free.
ONNX goes through torch's torch.export-based exporter (needs onnx + onnxscript); TorchScript is a
trace, checked on a second input size: every resize in the network takes its size from a scale
factor or a tensor's shape, so no size is baked in.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vwe import __version__
from vwe.config import Config, ExportModelConfig
from vwe.data.io import (
    atomic_path,
    ensure_writable_dir,
    refuse_overwriting_inputs,
    voc_palette,
    write_json_atomic,
)
from vwe.engine.checkpoint import Trained, load_checkpoint, load_trained
from vwe.engine.records import file_identity
from vwe.errors import VweError
from vwe.models.deeplab import PixelSegmenter, input_normalization
from vwe.models.registry import MODELS

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "images", "logits"
# (N, H, W) of the example inputs: batch 2 so the exporter keeps N free (1 would be specialised),
# sizes not multiples of 8 so that floor/ceil of the strides and MSC scales are exercised
EXAMPLE_SIZE, CHECK_SIZE = (2, 67, 83), (1, 45, 38)


def sidecar_path(out: Path) -> Path:
    """`OUT.json` beside OUT (model.onnx → model.onnx.json)."""
    return out.with_name(out.name + ".json")


def example_pixels(size: tuple[int, int, int]) -> torch.Tensor:
    """Fixed random RGB pixels 0–255, (N, 3, H, W) float32."""
    batch, height, width = size
    generator = torch.Generator().manual_seed(0)
    return torch.rand((batch, 3, height, width), generator=generator) * 255


@contextmanager
def warnings_to_log() -> Iterator[None]:
    """The exporters' deprecation and tracer warnings go to the debug log, once each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
        log.debug("exporter: %s", message)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise VweError(f"--format onnx needs the onnx and onnxscript packages ({err.name} is not "
                       "installed): pip install onnx onnxscript, or pip install 'vwe[export]'"
                       ) from None


def export_onnx(segmenter: nn.Module, out: Path, spec: ExportModelConfig,
                sidecar: dict[str, Any]) -> None:
    """ONNX with dynamic N, H, W (torch.export dims), written atomically as one file."""
    _require_onnx()
    dims = {axis: torch.export.Dim(name) for axis, name in
            ((0, "batch"), (2, "height"), (3, "width"))}
    with warnings_to_log(), torch.no_grad():
        try:
            program = torch.onnx.export(segmenter, (example_pixels(EXAMPLE_SIZE),),
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=(dims,), opset_version=spec.opset,
                                        dynamo=True, verbose=False)
        except Exception as err:  # noqa: BLE001 - the exporter's many error types, one line
            raise VweError(f"ONNX export of {spec.checkpoint} failed ({type(err).__name__}: "
                           f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
                           "try --format torchscript, or --debug for the details") from err
    with atomic_path(out) as tmp:
        program.save(tmp, external_data=False)


def export_torchscript(segmenter: nn.Module, out: Path, spec: ExportModelConfig,
                       sidecar: dict[str, Any]) -> None:
    """A trace, checked against eager at a second input size; the sidecar rides along as the
    archive's extra file `vwe.json`."""
    with warnings_to_log(), torch.no_grad():
        try:
            traced = torch.jit.trace(segmenter, example_pixels(EXAMPLE_SIZE),
                                     check_inputs=[(example_pixels(CHECK_SIZE),)],
                                     check_tolerance=1e-5)
        except torch.jit.TracingCheckError as err:
            raise VweError(f"the traced network of {spec.checkpoint} depends on the input size "
                           f"({str(err).strip().splitlines()[0]}); use --format onnx") from err
        with atomic_path(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={"vwe.json": json.dumps(sidecar)})


EXPORTERS: dict[str, Callable[[nn.Module, Path, ExportModelConfig, dict[str, Any]], None]] = {
    "onnx": export_onnx, "torchscript": export_torchscript}


def refuse_other_networks(path: Path) -> None:
    """CAM network and IRNet checkpoints are refused in one line (only DeepLab exports)."""
    arch = load_checkpoint(path).get("arch")
    name = arch.get("name") if isinstance(arch, dict) else None
    if name in MODELS and name != "deeplab":
        raise VweError(f"checkpoint {path} is a {MODELS[name].title} checkpoint; only DeepLab "
                       "(train-seg) checkpoints export, e.g. <run_dir>/train_seg/final.pt")


def describe(trained: Trained, segmenter: PixelSegmenter, spec: ExportModelConfig,
             out: Path) -> dict[str, Any]:
    """The sidecar: everything needed to feed the file and read its output, as plain data."""
    kwargs, state = trained.kwargs, trained.state
    num_classes = int(state.get("num_classes", kwargs["num_classes"]))
    names = [str(n) for n in state.get("class_names", [])] or \
        [f"class{i}" for i in range(num_classes)]
    mean, std, bgr = input_normalization(kwargs["layout"])
    return {
        "file": out.name, "format": spec.format,
        "opset": spec.opset if spec.format == "onnx" else None,
        "input": {"name": INPUT_NAME, "shape": ["N", 3, "H", "W"], "dtype": "float32",
                  "channels": "RGB", "range": [0, 255],
                  "normalization_in_graph": {"channel_order": "BGR" if bgr else "RGB",
                                             "mean": list(mean), "std": list(std)}},
        "output": {"name": OUTPUT_NAME, "shape": ["N", num_classes, "H", "W"],
                   "dtype": "float32", "meaning": "logits before softmax at the input size; "
                   "argmax over axis 1 is the class id, 0 = background"},
        "num_classes": num_classes, "class_names": names,
        "palette": voc_palette(num_classes).tolist(),
        "network": {"backbone": kwargs.get("backbone"), "layout": kwargs["layout"],
                    "msc_scales": list(segmenter.model.scales), "msc_fusion": "max"},
        "checkpoint": {"path": str(trained.path), "sha256": file_identity(trained.path),
                       "step": state.get("step")},
        "vwe_version": __version__, "torch_version": torch.__version__,
    }


def check_out(out: Path, checkpoint: Path) -> None:
    """OUT must be a new file name or an earlier export (its sidecar beside it) in a folder we
    can write, never the checkpoint it reads: checked before the slow export."""
    if out.is_dir():
        raise VweError(f"OUT {out} is a folder; pass a file name such as {out / 'model.onnx'}")
    refuse_overwriting_inputs([out, sidecar_path(out)], [checkpoint], "OUT", "CHECKPOINT")
    if out.exists() and not sidecar_path(out).is_file():
        raise VweError(f"OUT {out} exists and was not written by vwe export (no "
                       f"{sidecar_path(out).name} beside it); choose another name or delete it")
    ensure_writable_dir(out.parent, "OUT")


def run(cfg: Config) -> dict[str, Any]:
    spec = cfg.export_model
    if not spec.checkpoint or not spec.out:
        raise VweError("export needs CHECKPOINT and OUT: vwe export "
                       "runs/demo/train_seg/final.pt --format onnx deeplab.onnx")
    if spec.format not in EXPORTERS:
        raise VweError(f"export format '{spec.format}' is unknown; choose onnx or torchscript")
    checkpoint, out = Path(spec.checkpoint), Path(spec.out)
    check_out(out, checkpoint)
    refuse_other_networks(checkpoint)
    trained = load_trained(checkpoint, "deeplab",
                           overrides=None if spec.msc else {"msc_scales": []})
    segmenter = PixelSegmenter(trained.model, trained.kwargs["layout"]).eval()
    sidecar = describe(trained, segmenter, spec, out)
    EXPORTERS[spec.format](segmenter, out, spec, sidecar)
    write_json_atomic(sidecar_path(out), sidecar)
    log.info("export: %s → %s (%s, %d classes) and %s", checkpoint, out, spec.format,
             sidecar["num_classes"], sidecar_path(out))
    return {"out": str(out), "format": spec.format, "sidecar": str(sidecar_path(out)),
            "num_classes": sidecar["num_classes"]}
