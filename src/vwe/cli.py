"""`vwe <command> --config FILE [key=value …]`: parse, resolve the config, run one stage.

A `VweError` becomes one line on stderr and exit code 2 (a traceback only with `--debug`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vwe.config import Config, load_config, parse_sweep, to_yaml
from vwe.data.io import write_text_atomic
from vwe.engine.lock import run_dir_lock
from vwe.engine.progress import setup_logging
from vwe.engine.run_dir import RunDir
from vwe.errors import VweError, describe_memory_error, describe_os_error, one_line

log = logging.getLogger("vwe.cli")


@dataclass(frozen=True)
class Command:
    """One sub-command: the stage module it runs and what it is for."""

    module: str
    help: str
    default_config: str = ""


COMMANDS: dict[str, Command] = {
    "make-dataset": Command("make_dataset", "write the generated dataset to data.root"),
    "prepare-voc": Command("prepare_voc", "build train_aug and the label cache (VOC+SBD)"),
    "prepare-coco": Command("prepare_coco", "COCO 2014 masks, split lists and label cache"),
    "pretrain": Command("pretrain", "pretrain model.backbone on the generated classification "
                        "task (the offline ImageNet stand-in; cached)"),
    "train-cam": Command("train_cam", "train the VWE/HSPP CAM network"),
    "make-cam": Command("make_cam", "multi-scale + flip CAMs, one .npz per image (resumable)"),
    "eval-cam": Command("eval_cam", "CAM mIoU per class, at the background score and a sweep"),
    "codebook": Command("codebook", "the visual words' gallery (Fig. 5), usage and purity"),
    "import-weights": Command("import_weights", "convert the authors' released checkpoints"),
    "ir-labels": Command("ir_labels", "IRNet's fg/bg/ignore labels from confident CAMs (CRF)"),
    "train-irn": Command("train_irn", "train IRNet's boundary/displacement branches"),
    "pseudo-labels": Command("pseudo_labels", "random walk of the CAMs → pseudo-label PNGs"),
    "eval-labels": Command("eval_labels", "mIoU of a folder of label PNGs (+ bg sweep)"),
    "train-seg": Command("train_seg", "train DeepLabV2 on a folder of label PNGs"),
    "infer-seg": Command("infer_seg", "DeepLab predictions (+ dense CRF) as PNGs (resumable)"),
    "eval-seg": Command("eval_seg", "DeepLab mIoU per class, without and with CRF"),
    "export-voc-test": Command("export_voc_test", "the VOC test-server archive (tar.gz)"),
    "predict": Command("predict", "masks and overlays of new images from a trained checkpoint"),
    "export": Command("export_model", "the trained DeepLab as an ONNX or TorchScript file"),
    "run": Command("vwe.pipeline", "the whole pipeline: CAM → IRNet → DeepLab → evaluation"),
    "ablate": Command("vwe.experiments.ablate",
                      "Table 1's rows (baseline, + VWE, + HSPP, both, …) over seeds"),
    "sweep": Command("vwe.experiments.sweep", "one config key over values (Fig. 9), over seeds"),
    "report": Command("report", "one HTML page of a run: tables, curves, pictures"),
    "demo": Command("demo", "the whole demo on the generated dataset, on CPU", "demo.yaml"),
}


# Commands that write a recorded output folder (the others only read or write one file).
PER_FOLDER_COMMANDS = ("train-cam", "make-cam", "ir-labels", "train-irn", "pseudo-labels",
                       "train-seg", "infer-seg", "predict")
NO_RUN_DIR = ("import-weights", "export")  # writes only where its arguments say


def packaged_config(name: str) -> Path:
    """A YAML shipped inside the package (also reachable as ./configs/NAME in a checkout)."""
    return Path(str(resources.files("vwe") / "configs" / name))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vwe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        p.add_argument("--config", help="YAML config file (default: built-in defaults"
                       + (f", {command.default_config}" if command.default_config else "") + ")")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        if name in ("train-cam", "train-irn", "train-seg"):
            stage_dir = name.replace("-", "_")
            p.add_argument("--resume", action="store_true",
                           help=f"continue from <run_dir>/{stage_dir}/last.pt")
        if name in PER_FOLDER_COMMANDS:
            p.add_argument("--overwrite", action="store_true",
                           help="recompute outputs made with other settings instead of "
                                "stopping (docs/pipeline.md#records)")
        if name == "eval-labels":
            p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                           help="sweep the background threshold on the stored walks")
        if name in ("ablate", "sweep"):
            p.add_argument("--seeds", type=int, help="seeds 1..N per row (default 3)")
            p.add_argument("--through", choices=["eval-cam", "eval-labels", "eval-seg"],
                           help="the last stage of each run (default eval-cam)")
        if name == "sweep":
            p.add_argument("sweep_spec", metavar="KEY=V1,V2,…",
                           help="the key and its values, e.g. model.num_words=16,32,64 or "
                           "model.hspp_gamma=0,1,2,4 (Fig. 9)")
        if name in ("run", "demo"):
            p.add_argument("--from", dest="from_stage", metavar="STAGE",
                           help="rerun this stage and every later one (e.g. train-irn)")
        if name == "import-weights":
            p.add_argument("--format", required=True,
                           choices=["ijcai-code", "vwl-l", "vwl-m", "deeplab-caffe"],
                           help="which release of the authors' code saved SRC")
            p.add_argument("src", help="the authors' .pth file")
            p.add_argument("dst", help="where to write the converted checkpoint (.pt)")
        if name == "export":  # --format is checked by the config (export_model.format)
            p.add_argument("--format", required=True, metavar="{onnx,torchscript}",
                           help="which file to write (docs/segmentation.md#exported-models)")
            p.add_argument("checkpoint", help="a train-seg checkpoint (.pt)")
            p.add_argument("out", help="the file to write; OUT.json is written beside it")
        if name == "report":
            p.add_argument("report_dir", metavar="RUN_DIR", nargs="?",
                           help="the run directory (default: the config's run_dir)")
        if name == "predict":
            _predict_arguments(p)
            continue
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. train_cam.batch_size=8 preset=vwl-l")
    return parser


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="a run's train_seg/final.pt (DeepLab) or "
                   "train_cam/final.pt (CAM masks)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="images, folders or glob patterns; key=value items are config "
                   "overrides, e.g. predict.crf=true predict.probs=true predict.scales=[1,0.75] "
                   "predict.batch_size=4 device=cuda")
    p.add_argument("--out", required=True, help="folder for masks/, overlays/ and probs/")


def split_predict_inputs(items: list[str]) -> tuple[list[str], list[str]]:
    """(inputs, overrides): an item shaped like key=value that is not an existing path is an
    override, so `vwe predict CKPT images/ predict.crf=true` needs no separator."""
    inputs, overrides = [], []
    for item in items:
        (overrides if _is_override(item) else inputs).append(item)
    return inputs, overrides


def command_overrides(args: argparse.Namespace) -> list[str]:
    """Turn command-specific flags into config overrides, so stages only see a Config."""
    extra = []
    if getattr(args, "resume", False):
        extra.append(f"{args.command.replace('-', '_')}.resume=true")
    if getattr(args, "overwrite", False):
        extra.append("overwrite=changed")
    if getattr(args, "sweep", None) is not None:
        extra.append(f"eval_labels.sweep={str(args.sweep).lower()}")
    if getattr(args, "from_stage", None):
        extra.append(f"pipeline.from_stage={args.from_stage}")
    if args.command in ("ablate", "sweep"):
        section = args.command
        if args.seeds is not None:
            extra.append(f"{section}.seeds={args.seeds}")
        if args.through:
            extra.append(f"{section}.through={args.through}")
    if args.command == "sweep":
        key, values = parse_sweep(args.sweep_spec)
        extra += [f"sweep.key={key}", f"sweep.values={_quoted(values)}"]
    if args.command == "report" and args.report_dir and not _is_override(args.report_dir):
        extra.append(f"run_dir={_quoted(args.report_dir)}")
    if args.command == "predict":
        inputs, _ = split_predict_inputs(args.inputs)
        extra += [f"predict.checkpoint={_quoted(args.checkpoint)}",
                  f"predict.out={_quoted(args.out)}", f"predict.inputs={_quoted(inputs)}",
                  f"run_dir={_quoted(args.out)}"]
    if args.command == "import-weights":
        extra += [f"import_weights.format={args.format}", f"import_weights.src={args.src}",
                  f"import_weights.dst={args.dst}"]
    if args.command == "export":
        extra += [f"export_model.format={args.format}",
                  f"export_model.checkpoint={_quoted(args.checkpoint)}",
                  f"export_model.out={_quoted(args.out)}"]
    return extra


def _is_override(item: str) -> bool:
    """Shaped like key=value and not an existing path."""
    return bool(re.match(r"^[A-Za-z_][\w.]*=", item)) and not Path(item).exists()


def _quoted(value: str | list[str]) -> str:
    """A path (or paths) as an override value read back unchanged: JSON is YAML."""
    return json.dumps(value)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The user's key=value items (predict mixes them into its INPUT list)."""
    if args.command == "predict":
        return split_predict_inputs(args.inputs)[1]
    if args.command == "report" and args.report_dir and _is_override(args.report_dir):
        return [args.report_dir, *args.overrides]  # `vwe report key=value`: no RUN_DIR given
    return list(args.overrides)


def save_resolved_config(cfg: Config, command: str) -> None:
    """Every run keeps the config it actually ran with."""
    path = RunDir(cfg).config_file(command)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, to_yaml(cfg))


def run_command(args: argparse.Namespace) -> dict:
    command = COMMANDS[args.command]
    config_path = args.config or (
        packaged_config(command.default_config) if command.default_config else None)
    cfg = load_config(config_path, config_overrides(args) + command_overrides(args))
    rank = _env_rank()
    uses_run_dir = args.command not in NO_RUN_DIR
    check_run_dir(cfg, args.command, uses_run_dir)
    with ExitStack() as held:
        try:
            setup_logging(cfg.run_dir if uses_run_dir else None, rank, args.debug)
            held.enter_context(run_dir_lock(RunDir(cfg).lock, args.command,
                                            enabled=uses_run_dir and rank == 0))
            if rank == 0 and uses_run_dir:
                save_resolved_config(cfg, args.command)
        except OSError as err:
            raise VweError(f"cannot write to run_dir {cfg.run_dir} ({err.strerror}); choose a "
                           "writable folder with run_dir=…") from None
        if getattr(args, "resume", False) and rank == 0:
            say_when_nothing_to_resume(cfg, args.command)
        target = command.module if "." in command.module else f"vwe.stages.{command.module}"
        stage = importlib.import_module(target)
        return stage.run(cfg)


def check_run_dir(cfg: Config, command: str, uses_run_dir: bool) -> None:
    """An empty run_dir would write into the current folder; `vwe report` reads a run, so its
    folder must exist (it would otherwise be created, then blamed on the dataset)."""
    if uses_run_dir and not str(cfg.run_dir).strip():
        raise VweError("run_dir is empty; set it to a folder for this run's files, e.g. "
                       "run_dir=runs/mine")
    if command == "report" and not Path(cfg.run_dir).is_dir():
        raise VweError(f"run directory {cfg.run_dir} does not exist; pass the folder of a run "
                       "(vwe report runs/demo)")


def say_when_nothing_to_resume(cfg: Config, command: str) -> None:
    """`--resume` where no last.pt exists starts at step 0: say so (a mistyped run_dir)."""
    stage = command.replace("-", "_")
    out = RunDir(cfg).training(stage)
    if not out.last.exists() and not out.final.exists():
        log.warning("--resume: %s has no last.pt; %s starts at step 0", out.root, command)


def user_errors() -> tuple[type[BaseException], ...]:
    """What the CLI reports in one line: VweError, OS errors, running out of (GPU) memory."""
    torch = sys.modules.get("torch")  # only once a stage has imported it
    return (VweError, OSError, MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))


def user_message(err: BaseException, command: str) -> str:
    """The one line the CLI prints for an error the user can act on."""
    if isinstance(err, OSError):
        return one_line(describe_os_error(err, command))
    if not isinstance(err, VweError):  # MemoryError or torch.OutOfMemoryError
        return one_line(describe_memory_error(command))
    return one_line(str(err))


def _env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None
                    ) -> argparse.Namespace:
    """Parse; positional items (predict's INPUTs, key=value overrides) may also follow an
    option, as in `vwe sweep KEY=V1,V2 --seeds 1 key=value`."""
    args, extra = parser.parse_known_args(argv)
    if extra and not any(e.startswith("-") for e in extra):
        (args.inputs if args.command == "predict" else args.overrides).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(build_parser(), argv)
    try:
        summary = run_command(args)
    except user_errors() as err:
        if args.debug:
            raise
        print(f"vwe {args.command}: error: {user_message(err, args.command)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vwe {args.command}: interrupted", file=sys.stderr)
        return 130
    table = summary.get("table") if isinstance(summary, dict) else None
    if table and _env_rank() == 0:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
