"""vwe report: one HTML page whose tables hold the run's own numbers and whose pictures exist;
rendered in headless Chromium where the Debian package is installed."""

import json
import re
import shutil
import subprocess

import pytest

from vwe.cli import main

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


def test_chromium_renders_it_without_errors(reported):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--dump-dom", (reported / "report" / "index.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<h1>vwe report" in done.stdout
