"""`vwe <command> --config FILE [key=value …]`: parse, resolve the config, run one stage.

A `VweError` becomes one line on stderr and exit code 2 (a traceback only with `--debug`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vwe.config import Config, load_config, to_yaml
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
    "train-cam": Command("train_cam", "train the VWE/HSPP CAM network"),
    "make-cam": Command("make_cam", "multi-scale + flip CAMs, one .npz per image (resumable)"),
    "eval-cam": Command("eval_cam", "CAM mIoU per class, at the background score and a sweep"),
    "import-weights": Command("import_weights", "convert the authors' released checkpoints"),
    "ir-labels": Command("ir_labels", "IRNet's fg/bg/ignore labels from confident CAMs (CRF)"),
    "train-irn": Command("train_irn", "train IRNet's boundary/displacement branches"),
    "pseudo-labels": Command("pseudo_labels", "random walk of the CAMs → pseudo-label PNGs"),
    "eval-labels": Command("eval_labels", "mIoU of a folder of label PNGs (+ bg sweep)"),
    "train-seg": Command("train_seg", "train DeepLabV2 on a folder of label PNGs"),
    "infer-seg": Command("infer_seg", "DeepLab predictions (+ dense CRF) as PNGs (resumable)"),
    "eval-seg": Command("eval_seg", "DeepLab mIoU per class, without and with CRF"),
    "export-voc-test": Command("export_voc_test", "the VOC test-server archive (tar.gz)"),
    "run": Command("vwe.pipeline", "the whole pipeline: CAM → IRNet → DeepLab → evaluation"),
    "demo": Command("demo", "the whole demo on the generated dataset, on CPU", "demo.yaml"),
}


# Commands that write a recorded output folder (the others only read or write one file).
PER_FOLDER_COMMANDS = ("train-cam", "make-cam", "ir-labels", "train-irn", "pseudo-labels",
                       "train-seg", "infer-seg")
NO_RUN_DIR = ("import-weights",)  # writes only where its arguments say


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
        if name in ("run", "demo"):
            p.add_argument("--from", dest="from_stage", metavar="STAGE",
                           help="rerun this stage and every later one (e.g. train-irn)")
        if name == "import-weights":
            p.add_argument("--format", required=True,
                           choices=["ijcai-code", "vwl-l", "vwl-m", "deeplab-caffe"],
                           help="which release of the authors' code saved SRC")
            p.add_argument("src", help="the authors' .pth file")
            p.add_argument("dst", help="where to write the converted checkpoint (.pt)")
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. train_cam.batch_size=8 preset=vwl-l")
    return parser


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
    if args.command == "import-weights":
        extra += [f"import_weights.format={args.format}", f"import_weights.src={args.src}",
                  f"import_weights.dst={args.dst}"]
    return extra


def save_resolved_config(cfg: Config, command: str) -> None:
    """Every run keeps the config it actually ran with."""
    path = RunDir(cfg).config_file(command)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, to_yaml(cfg))


def run_command(args: argparse.Namespace) -> dict:
    command = COMMANDS[args.command]
    config_path = args.config or (
        packaged_config(command.default_config) if command.default_config else None)
    cfg = load_config(config_path, list(args.overrides) + command_overrides(args))
    rank = _env_rank()
    uses_run_dir = args.command not in NO_RUN_DIR
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
        target = command.module if "." in command.module else f"vwe.stages.{command.module}"
        stage = importlib.import_module(target)
        return stage.run(cfg)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
