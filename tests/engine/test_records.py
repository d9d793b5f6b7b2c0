"""Records: settings flattened from the config, differences named, the overwrite modes."""

import json

import pytest

from vwe.config import load_config
from vwe.engine.records import (
    RECORD_FILE,
    Record,
    differences,
    digest_of,
    file_identity,
    flat_settings,
    folder_identity,
    needs_clearing,
    require_current,
    write_record,
)
from vwe.errors import VweError


def test_flat_settings_takes_sections_leaves_and_exclusions():
    cfg = load_config(None, ["cam.scales=[1.0, 2.0]", "infer_seg.crf.bi_w=5"])
    flat = flat_settings(cfg, ["seed", "cam", "infer_seg.crf"],
                         ["cam.split", "infer_seg.crf.workers"])
    assert flat["seed"] == 1 and flat["cam.scales"] == [1.0, 2.0]
    assert flat["infer_seg.crf.bi_w"] == 5 and "cam.split" not in flat
    assert "infer_seg.crf.workers" not in flat and "cam.checkpoint" in flat


def test_digest_ignores_key_order_and_follows_values():
    assert digest_of({"a": 1, "b": [1, 2]}) == digest_of({"b": [1, 2], "a": 1})
    assert digest_of({"a": 1}) != digest_of({"a": 2})


def test_differences_name_settings_inputs_and_version():
    old = Record("s", {"x": 1, "y": [1]}, {"checkpoint": "sha256:aa"}).to_json()
    new = Record("s", {"x": 2, "y": [1]}, {"checkpoint": "sha256:bb"}, version=9).to_json()
    assert differences(old, new) == ["format version: 1 → 9", "x: 1 → 2",
                                     "input checkpoint: sha256:aa → sha256:bb"]


def test_file_and_folder_identity(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"abc")
    first = file_identity(path)
    path.write_bytes(b"abd")
    assert file_identity(path) != first and file_identity(tmp_path / "none") == "missing"
    folder = tmp_path / "out"
    assert folder_identity(folder) == "missing"
    folder.mkdir()
    assert folder_identity(folder).startswith("external:")  # a folder nobody recorded
    record = Record("s", {"x": 1})
    write_record([folder], record)
    assert folder_identity(folder) == record.digest()


def test_overwrite_modes(tmp_path):
    made = Record("make_cam", {"cam.scales": [1.0, 0.5]})
    wanted = Record("make_cam", {"cam.scales": [1.0]})
    write_record([tmp_path], made)
    assert not needs_clearing(tmp_path, made, "never", "make_cam", True)  # equal: resume
    assert needs_clearing(tmp_path, made, "always", "make_cam", True)  # --from: redo
    assert needs_clearing(tmp_path, wanted, "changed", "make_cam", True)
    with pytest.raises(VweError) as err:
        needs_clearing(tmp_path, wanted, "never", "make_cam", True)
    assert "cam.scales: [1.0, 0.5] → [1.0]" in str(err.value) and "--overwrite" in str(err.value)
    with pytest.raises(VweError, match="unknown"):
        needs_clearing(tmp_path, wanted, "sometimes", "make_cam", True)


def test_unrecorded_files_are_refused_but_an_empty_folder_is_not(tmp_path):
    wanted = Record("ir_labels", {"ir_labels.fg_thres": 0.3})
    assert not needs_clearing(tmp_path, wanted, "never", "ir_labels", has_outputs=False)
    with pytest.raises(VweError, match=f"no {RECORD_FILE}"):
        needs_clearing(tmp_path, wanted, "never", "ir_labels", has_outputs=True)


def test_consumers_refuse_a_differing_record_and_accept_an_unrecorded_folder(tmp_path):
    wanted = Record("make_cam", {"cam.scales": [1.0]})
    require_current(tmp_path / "absent", wanted, "make-cam", "vwe make-cam --overwrite")
    require_current(tmp_path, wanted, "make-cam", "vwe make-cam --overwrite")  # by hand
    (tmp_path / RECORD_FILE).write_text(json.dumps(Record("make_cam", {"cam.scales": [2.0]})
                                                   .to_json()))
    with pytest.raises(VweError, match=r"cam.scales: \[2.0\] → \[1.0\]"):
        require_current(tmp_path, wanted, "make-cam", "vwe make-cam --overwrite")
