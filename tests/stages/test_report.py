"""vwe report: one HTML page whose tables hold the run's own numbers and whose pictures exist;
rendered in headless Chromium where the Debian package is installed."""

import json
import re

import numpy as np
import pytest

from chromium import check_page, find_browser
from vwe.cli import main
from vwe.report import spread_of_classes

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture()
def reported(cam_run, tiny_dataset, run_copy, refine_overrides):
    run_dir = run_copy()
    args = refine_overrides(tiny_dataset, run_dir)
    assert main(["eval-cam", *args]) == 0
    assert main(["report", str(run_dir), *args[:1]]) == 0
    return run_dir


def test_the_page_holds_the_runs_numbers_and_every_picture(reported):
    page = (reported / "report" / "index.html").read_text()
    report = json.loads((reported / "eval_cam.json").read_text())
    ious = report["variants"]["fused"]["at_bkg_score"]["iou"]
    for name, iou in zip(report["class_names"], ious):
        if iou is not None:
            assert f"<th>{name}</th><td>{100 * iou:.1f}</td>" in page
    sources = re.findall(r"<img src='([^']+)'", page)
    assert "curves_train_cam.png" in sources and any(s.startswith("panel_") for s in sources)
    for source in sources:
        assert (reported / "report" / source).is_file(), source
    assert "http" not in page  # nothing fetched from a network


def test_chromium_renders_it_with_every_image_and_no_console_error(reported):
    browser = find_browser()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    page = reported / "report" / "index.html"
    check = check_page(browser, page)
    assert check.title.startswith("vwe report")
    assert check.images == len(re.findall(r"<img ", page.read_text())) > 3
    assert check.broken_images == [] and check.errors == []


def test_the_chromium_check_sees_a_broken_image_and_a_console_error(tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    page = tmp_path / "page.html"
    page.write_text("<title>t</title><img src='missing.png'><script>console.error('x')</script>")
    check = check_page(browser, page)
    assert check.broken_images == ["missing.png"] and len(check.errors) == 2


def test_picture_strips_show_a_spread_of_classes():
    """Each class's first image in turn, not the split's first names (six flowers)."""
    class Layout:
        num_classes = 3

        def labels_for(self, names):
            classes = {"f1": 0, "f2": 0, "f3": 0, "f4": 0, "cat": 1, "car": 2}
            return {n: np.eye(3, dtype=np.float32)[classes[n]] for n in names}

    names = ["f1", "f2", "f3", "f4", "cat", "car"]
    assert spread_of_classes(Layout(), names, 4) == ["f1", "cat", "car", "f2"]
    assert spread_of_classes(Layout(), names, 2) == ["f1", "cat"]
