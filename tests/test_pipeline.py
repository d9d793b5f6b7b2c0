"""`vwe run` mechanics: done-markers skip finished stages, an unfinished one resumes, --from
reruns from a stage on, and the stage table reads the summaries."""

import sys
import types

import pytest

from vwe.config import load_config
from vwe.errors import VweError
from vwe.pipeline import run_stages, stage_table, with_resume


@pytest.fixture()
def fake_stages(monkeypatch):
    """Three stage modules that record their calls; `b` stops unfinished on its first call."""
    calls: list[tuple[str, bool]] = []
    state = {"b_runs": 0}

    def make(name):
        def run(cfg):
            calls.append((name, cfg.train_cam.resume))
            if name == "b":
                state["b_runs"] += 1
                return {"finished": state["b_runs"] > 1, "step": state["b_runs"]}
            return {"miou": 0.5}
        module = types.ModuleType(f"vwe.stages.{name}")
        module.run = run
        monkeypatch.setitem(sys.modules, f"vwe.stages.{name}", module)

    for name in ("a", "b", "c"):
        make(name)
    return calls


def test_skip_finished_resume_unfinished_and_rerun_from(tmp_path, fake_stages):
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    run_stages(cfg, ("a", "b", "c"))
    assert [c[0] for c in fake_stages] == ["a", "b"]  # b stopped early: c must wait
    assert all(resume for _, resume in fake_stages)  # training stages resume when they can
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.json"]

    fake_stages.clear()
    run_stages(cfg, ("a", "b", "c"))  # a done: the unfinished b resumes, then c
    assert [c[0] for c in fake_stages] == ["b", "c"]

    fake_stages.clear()
    summaries = run_stages(cfg, ("a", "b", "c"))
    assert fake_stages == [] and summaries["a"] == {"miou": 0.5}

    fake_stages.clear()
    run_stages(cfg, ("a", "b", "c"), from_stage="b")
    assert [c[0] for c in fake_stages] == ["b", "c"]

    with pytest.raises(VweError, match="not a stage"):
        run_stages(cfg, ("a", "b", "c"), from_stage="z")


def test_with_resume_sets_every_training_stage():
    cfg = with_resume(load_config())
    assert cfg.train_cam.resume and cfg.train_irn.resume and cfg.train_seg.resume


def test_stage_table_reads_summaries():
    table = stage_table({"eval_cam": {"miou": 0.6041}, "eval_labels": {"miou": 0.7},
                         "eval_seg": {"variants": {"raw": 0.65, "crf": 0.66}}}, "paper")
    lines = table.splitlines()
    assert "60.4" in lines[2] and "52.9" in lines[2]
    assert "70.0" in lines[3] and "67.7" in lines[3]
    assert "65.0" in lines[4] and "66.0" in lines[5] and "67.2" in lines[5]


def test_a_changed_record_reruns_its_stage_and_the_later_ones(tmp_path, fake_stages,
                                                              monkeypatch):
    from vwe import stage_records
    from vwe.engine.records import Record

    def chain(name, upstream):
        def record(cfg, run):
            inputs = {"up": stage_records.RECORDS[upstream](cfg, run).digest()} if upstream \
                else {}
            return Record(name, {"seed": cfg.seed} if name == "b" else {}, inputs)
        return record

    for name, upstream in (("a", None), ("b", "a"), ("c", "b")):
        monkeypatch.setitem(stage_records.RECORDS, name, chain(name, upstream))
    cfg = load_config(None, [f"run_dir={tmp_path}"])
    run_stages(cfg, ("a", "b", "c"))
    run_stages(cfg, ("a", "b", "c"))  # b finishes on its second call, then c
    fake_stages.clear()
    run_stages(cfg, ("a", "b", "c"))
    assert fake_stages == []  # every marker holds today's record
    run_stages(load_config(None, [f"run_dir={tmp_path}", "seed=7"]), ("a", "b", "c"))
    assert [c[0] for c in fake_stages] == ["b", "c"]  # b's key changed: b and what follows


def test_pretrain_runs_only_when_a_weights_key_is_generated_and_then_every_time(tmp_path,
                                                                              monkeypatch):
    calls = []
    module = types.ModuleType("vwe.stages.pretrain")
    module.run = lambda cfg: calls.append(cfg.seg.pretrained) or {"backbones": {}}
    monkeypatch.setitem(sys.modules, "vwe.stages.pretrain", module)
    run_stages(load_config(None, [f"run_dir={tmp_path / 'a'}"]), ("pretrain",))
    assert calls == []  # imagenet everywhere: nothing to pretrain
    cfg = load_config(None, [f"run_dir={tmp_path / 'b'}", "seg.pretrained=generated"])
    run_stages(cfg, ("pretrain",))
    run_stages(cfg, ("pretrain",))  # its cache check is its own: never skipped by a marker
    assert calls == ["generated", "generated"]


def test_the_stage_table_names_the_pretrained_backbone():
    summaries = {"pretrain": {"backbones": {"resnet_tiny": {"val_accuracy": 0.894,
                                                             "chance": 1 / 96}}}}
    assert "backbone resnet_tiny: pretrained on the generated task, held-out accuracy 89.4 % " \
           "(chance 1.0 %)" in stage_table(summaries, "paper")


def test_another_split_reruns_a_stage_whose_record_leaves_the_split_out(tmp_path,
                                                                        monkeypatch):
    """infer-seg's record has no split (seg/<split> folders), so its marker says which split
    it covers: infer_seg.split=test after val runs it again (was skipped: eval-seg then found
    no predictions)."""
    from vwe import stage_records
    from vwe.engine.records import Record

    calls: list[str] = []

    def run(cfg):
        calls.append(cfg.infer_seg.split)
        return {"split": cfg.infer_seg.split}

    module = types.ModuleType("vwe.stages.infer_seg")
    module.run = run
    monkeypatch.setitem(sys.modules, "vwe.stages.infer_seg", module)
    monkeypatch.setitem(stage_records.RECORDS, "infer_seg",
                        lambda cfg, run_dir: Record("infer_seg", {}, {}))
    for split in ("val", "val", "test", "test", "val"):
        run_stages(load_config(None, [f"run_dir={tmp_path}", f"infer_seg.split={split}"]),
                   ("infer_seg",))
    assert calls == ["val", "test", "val"]
