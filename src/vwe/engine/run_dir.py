"""The run directory: one object that names every stage's folder and file.

Stages ask it for paths instead of joining string literals, so the layout is written once (and
documented once, in docs/formats.md). Keys that point outside the run directory
(`cam.checkpoint`, `seg.label_dir`, `infer_seg.out_dir`, …) are resolved here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vwe.config import Config

TRAINING_STAGES = ("train_cam", "train_irn", "train_seg")


@dataclass(frozen=True)
class TrainingDir:
    """A training stage's folder: last.pt (resumable), final.pt (done), tb/ (TensorBoard)."""

    root: Path

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def final(self) -> Path:
        return self.root / "final.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"


@dataclass(frozen=True)
class RunDir:
    """Every path of one run, from `cfg.run_dir` and the keys that may point elsewhere."""

    cfg: Config

    @property
    def root(self) -> Path:
        return Path(self.cfg.run_dir)

    # ---- bookkeeping ----
    def config_file(self, command: str) -> Path:
        return self.root / "configs" / f"{command}.yaml"

    def done_marker(self, stage: str) -> Path:
        return self.root / "done" / f"{stage}.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def log_file(self) -> Path:
        return self.root / "log.txt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def eval_json(self, stage: str) -> Path:
        """eval_cam.json, eval_labels.json, eval_seg.json."""
        return self.root / f"{stage}.json"

    # ---- training stages ----
    def training(self, stage: str) -> TrainingDir:
        if stage not in TRAINING_STAGES:
            raise ValueError(f"{stage} is not a training stage")
        return TrainingDir(self.root / stage)

    @property
    def cam_checkpoint(self) -> Path:
        """cam.checkpoint, else train_cam/final.pt."""
        return Path(self.cfg.cam.checkpoint) if self.cfg.cam.checkpoint else \
            self.training("train_cam").final

    @property
    def irn_checkpoint(self) -> Path:
        """pseudo_labels.checkpoint, else train_irn/final.pt."""
        checkpoint = self.cfg.pseudo_labels.checkpoint
        return Path(checkpoint) if checkpoint else self.training("train_irn").final

    @property
    def seg_checkpoint(self) -> Path:
        """infer_seg.checkpoint, else train_seg/final.pt."""
        checkpoint = self.cfg.infer_seg.checkpoint
        return Path(checkpoint) if checkpoint else self.training("train_seg").final

    # ---- per-image outputs ----
    @property
    def cams(self) -> Path:
        return self.root / "cams"

    def cam_file(self, name: str) -> Path:
        """cams/<name>.npz (docs/formats.md#cam-files)."""
        return self.cams / f"{name}.npz"

    @property
    def cam_panels(self) -> Path:
        return self.root / "cam_panels"

    def cam_panel_file(self, name: str) -> Path:
        return self.cam_panels / f"{name}.png"

    @property
    def ir_labels(self) -> Path:
        return self.root / "ir_labels"

    def ir_label_file(self, name: str) -> Path:
        return self.label_file(self.ir_labels, name)

    @property
    def pseudo_labels(self) -> Path:
        return self.root / "pseudo_labels"

    @property
    def walks(self) -> Path:
        return self.root / "walks"

    def pseudo_label_file(self, name: str) -> Path:
        return self.label_file(self.pseudo_labels, name)

    def walk_file(self, name: str) -> Path:
        return self.walks / f"{name}.npz"

    @property
    def seg_train_labels(self) -> Path:
        """seg.label_dir, else the pseudo labels."""
        return Path(self.cfg.seg.label_dir) if self.cfg.seg.label_dir else self.pseudo_labels

    @property
    def eval_label_dir(self) -> Path:
        """eval_labels.label_dir, else the pseudo labels."""
        label_dir = self.cfg.eval_labels.label_dir
        return Path(label_dir) if label_dir else self.pseudo_labels

    @staticmethod
    def label_file(folder: Path, name: str) -> Path:
        """<folder>/<name>.png in any folder of label PNGs (pseudo labels, a user's masks)."""
        return Path(folder) / f"{name}.png"

    @staticmethod
    def prediction_file(folder: Path, variant: str, name: str) -> Path:
        """<predictions>/<raw|crf>/<name>.png inside a prediction folder."""
        return Path(folder) / variant / f"{name}.png"

    def predictions(self, split: str) -> Path:
        """infer-seg's folder of a split (raw/ and crf/ inside): seg/<split>."""
        return self.root / "seg" / split

    @property
    def infer_seg_out(self) -> Path:
        """infer_seg.out_dir, else seg/<infer_seg.split>."""
        out_dir = self.cfg.infer_seg.out_dir
        return Path(out_dir) if out_dir else self.predictions(self.cfg.infer_seg.split)

    @property
    def eval_seg_predictions(self) -> Path:
        """eval_seg.pred_dir, else seg/<eval_seg.split>."""
        pred_dir = self.cfg.eval_seg.pred_dir
        return Path(pred_dir) if pred_dir else self.predictions(self.cfg.eval_seg.split)

    @property
    def export_predictions(self) -> Path:
        """export.pred_dir, else seg/<export.split>."""
        pred_dir = self.cfg.export.pred_dir
        return Path(pred_dir) if pred_dir else self.predictions(self.cfg.export.split)

    @property
    def export_archive(self) -> Path:
        archive = self.cfg.export.archive
        return Path(archive) if archive else self.root / "voc_test_results.tar.gz"
