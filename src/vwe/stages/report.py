"""`vwe report RUN_DIR`: one self-contained HTML page of a run; the page itself is built by
`vwe.report` (docs/pipeline.md#report), which `vwe demo` calls too."""

from __future__ import annotations

from typing import Any

from vwe.config import Config
from vwe.report import build_report


def run(cfg: Config) -> dict[str, Any]:
    return build_report(cfg)
