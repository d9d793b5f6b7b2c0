"""The spread of every stage's mIoU over seeds and thread counts (issue: numbers that hold).

Runs `vwe demo --config CONFIG seed=S run_dir=OUT/s{S}-t{T}` with T threads per process
(OMP_NUM_THREADS / MKL_NUM_THREADS) for every seed and thread count, then prints one row per run
(CAM, pseudo labels, segmentation, segmentation + CRF) and the spread (max - min) of each stage
over all of them, then each stage's per-class spread: the mean over the classes of each class's
IoU spread, and the widest class (class_spread.json). Every run goes through `vwe demo`, whose
stage records skip what is done with the same settings (a finished run costs seconds; new
overrides rerun what they change, never read an older run's scores); with --parallel 2 two runs
of one thread each share a 2-core machine (each pinned to its own core).

    python benchmarks/stability.py --out benchmarks/out/stability [--config configs/demo.yaml]
        [--seeds 1,2,3] [--threads 1,2] [--parallel 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

STAGES = (("cam", "eval_cam", None), ("pseudo", "eval_labels", None),
          ("seg", "eval_seg", "raw"), ("seg_crf", "eval_seg", "crf"))
# where each stage's report keeps its per-class IoU (the scores its mIoU averages)
CLASS_IOU = {"cam": ("eval_cam", ("variants", "fused", "at_bkg_score", "iou")),
             "pseudo": ("eval_labels", ("scores", "iou")),
             "seg": ("eval_seg", ("variants", "raw", "iou")),
             "seg_crf": ("eval_seg", ("variants", "crf", "iou"))}


def scores(run_dir: Path) -> dict[str, float | None]:
    """Each stage's mIoU from the done markers of a finished run."""
    out: dict[str, float | None] = {}
    for key, stage, variant in STAGES:
        marker = run_dir / "done" / f"{stage}.json"
        summary = json.loads(marker.read_text())["summary"] if marker.is_file() else {}
        value = summary.get("variants", {}).get(variant) if variant else summary.get("miou")
        out[key] = None if value is None else round(100 * float(value), 1)
    return out


def class_ious(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each stage's IoU per class (%) from its report; a stage not scored is left out."""
    out: dict[str, dict[str, float]] = {}
    for key, (report_name, path) in CLASS_IOU.items():
        report_file = run_dir / f"{report_name}.json"
        if not report_file.is_file():
            continue
        report = json.loads(report_file.read_text())
        node: Any = report
        for step in path:
            node = node.get(step) if isinstance(node, dict) else None
        if node is not None:
            out[key] = {name: 100 * float(iou) for name, iou in zip(report["class_names"], node)}
    return out


def class_spreads(runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per stage, each class's spread (max - min IoU over the runs), their mean, and the widest.

    Why: the mean's spread over a few seeds depends on whether the classes' errors cancel; the
    classes' own spreads show where a stage's instability is born and how large it really is.
    """
    out: dict[str, dict[str, Any]] = {}
    for key in CLASS_IOU:
        per_run = [ious[key] for ious in runs.values() if key in ious]
        if len(per_run) < 2:
            continue
        names = [name for name in per_run[0] if all(name in run for run in per_run)]
        spread = {name: max(run[name] for run in per_run) - min(run[name] for run in per_run)
                  for name in names}
        widest = max(spread, key=spread.__getitem__)
        out[key] = {"classes": spread, "mean": sum(spread.values()) / len(spread),
                    "widest": widest}
    return out


def class_table(spreads: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'stage':<10}{'class spread (mean)':>21}  widest class"]
    for key, row in spreads.items():
        lines.append(f"{key:<10}{row['mean']:>21.1f}  {row['widest']} "
                     f"{row['classes'][row['widest']]:.1f}")
    return "\n".join(lines)


def command(config: str, seed: int, run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "vwe.cli", "demo", "--config", config, f"seed={seed}",
            f"run_dir={run_dir}", "pipeline.supervised=false", *overrides]


def launch(cmd: list[str], threads: int, core: int | None, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
    return subprocess.Popen(cmd, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT)


def run_all(jobs: list[tuple[int, int, Path]], args: argparse.Namespace,
            overrides: list[str]) -> None:
    """One-thread jobs run `--parallel` at a time, each pinned to a core; others alone."""
    pending = list(jobs)  # every run: `vwe demo` skips the stages done with these settings
    while pending:
        width = args.parallel if pending[0][1] == 1 else 1
        batch = [job for job in pending if job[1] == pending[0][1]][:width]
        procs = []
        for index, (seed, threads, run_dir) in enumerate(batch):
            run_dir.mkdir(parents=True, exist_ok=True)
            core = index if width > 1 else None
            procs.append(launch(command(args.config, seed, run_dir, overrides), threads, core,
                                run_dir.with_suffix(".log")))
        for proc, job in zip(procs, batch):
            if proc.wait() != 0:
                raise SystemExit(f"run {job[2]} failed: see {job[2].with_suffix('.log')}")
        pending = [job for job in pending if job not in batch]


def table(rows: dict[str, dict[str, Any]]) -> str:
    keys = [key for key, _, _ in STAGES]
    lines = [f"{'run':<10}" + "".join(f"{k:>9}" for k in keys)]
    for name, row in rows.items():
        lines.append(f"{name:<10}" + "".join(f"{'-' if row[k] is None else row[k]:>9}"
                                             for k in keys))
    spread = {k: [row[k] for row in rows.values() if row[k] is not None] for k in keys}
    lines.append(f"{'spread':<10}" + "".join(
        f"{(max(v) - min(v)) if v else float('nan'):>9.1f}" for v in spread.values()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/out/stability")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--parallel", type=int, default=2)
    args, overrides = parser.parse_known_args(argv)
    out = Path(args.out)
    jobs = [(int(seed), int(threads), out / f"s{seed}-t{threads}")
            for threads in args.threads.split(",") for seed in args.seeds.split(",")]
    for first in ("make-dataset", "pretrain"):  # shared by every run: made once, not raced
        subprocess.run([sys.executable, "-m", "vwe.cli", first, "--config", args.config,
                        *overrides], check=True)
    run_all(jobs, args, overrides)
    rows = {run_dir.name: scores(run_dir) for _, _, run_dir in jobs}
    (out / "stability.json").write_text(json.dumps(rows, indent=2))
    spreads = class_spreads({run_dir.name: class_ious(run_dir) for _, _, run_dir in jobs})
    (out / "class_spread.json").write_text(json.dumps(spreads, indent=2))
    print(table(rows))
    print(class_table(spreads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
