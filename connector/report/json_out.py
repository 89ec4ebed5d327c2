"""The `--format json` output: exactly ScreenReport.to_json() (schemas/result.schema.json)."""

from __future__ import annotations

import json

from connector.results import ScreenReport


def render_json(report: ScreenReport) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)
