"""Charts of experiments (matplotlib, headless): the ablation's bars and a sweep's lines, each
with the seed-to-seed standard deviation as error bars. Data in, a PNG written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vwe.data.io import atomic_path

SERIES = (("cam_at_bkg", "at the configured bkg score"), ("cam_best", "at the best threshold"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _mean_sd(row: dict[str, Any], key: str) -> tuple[float, float]:
    stats = row.get(key) or {}
    mean = stats.get("mean")
    return (float("nan"), 0.0) if mean is None else (mean, stats.get("sd") or 0.0)


def ablation_chart(path: str | Path, rows: Sequence[dict[str, Any]], title: str) -> Path:
    """Grouped bars per row (mean ± sd over seeds), the paper's VOC number as a black mark."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(rows)), 4.0))
    width = 0.38
    positions = list(range(len(rows)))
    for offset, (key, label) in zip((-width / 2, width / 2), SERIES):
        means, sds = zip(*(_mean_sd(row, key) for row in rows)) if rows else ((), ())
        ax.bar([p + offset for p in positions], means, width, yerr=sds, capsize=3, label=label)
    papers = [(p, row["paper"]) for p, row in zip(positions, rows) if row.get("paper")]
    if papers:
        ax.scatter([p for p, _ in papers], [v for _, v in papers], marker="D", color="black",
                   zorder=3, label="paper (VOC 2012)")
    ax.set_xticks(positions, [row["label"] for row in rows], rotation=20, ha="right")
    ax.set_ylabel("CAM mIoU (%)")
    ax.set_title(title)
    _legend_above_data(ax)
    return _save(fig, plt, path)


def _legend_above_data(ax: Any) -> None:
    """Room above the tallest bar or mark, and the legend in it, in one row."""
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.22)
    ax.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)


def sweep_chart(path: str | Path, key: str, values: Sequence[Any],
                rows: Sequence[dict[str, Any]], title: str) -> Path:
    """mIoU (mean ± sd over seeds) against the swept values; categorical x when not numbers."""
    plt = _pyplot()
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    xs = list(values) if numeric else list(range(len(values)))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for series, label in SERIES:
        means, sds = zip(*(_mean_sd(row, series) for row in rows)) if rows else ((), ())
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=label)
    if not numeric:
        ax.set_xticks(xs, [str(v) for v in values])
    ax.set_xlabel(key)
    ax.set_ylabel("CAM mIoU (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def training_curves(path: str | Path, tensorboard_dir: str | Path, stage: str) -> Path | None:
    """The `loss/*` scalars of a training stage's TensorBoard folder, one line each; None when
    the folder holds none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = sorted(tag for tag in events.Tags().get("scalars", []) if tag.startswith("loss/"))
    if not tags:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    for tag in tags:
        points = events.Scalars(tag)
        ax.plot([p.step for p in points], [p.value for p in points], label=tag[5:])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(stage.replace("_", "-"))
    ax.legend(fontsize=7, ncol=3)
    return _save(fig, plt, path)
