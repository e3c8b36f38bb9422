"""The Grafana dashboard in ops/grafana reads only metrics this repository exports (or Flower's)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from tests.support.env import ROOT

DASHBOARD = Path(ROOT) / "ops" / "grafana" / "artisan-jobs.json"


def _exported_names() -> set[str]:
    import workers.metrics as api_metrics
    from workers import monitoring

    names: set[str] = set()
    registries: list[CollectorRegistry] = [monitoring.in_process_registry()]
    monitoring.metrics()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
    for value in vars(api_metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and hasattr(value, "_name"):
            names.update(family.name for family in describe())
    names.add("artisan_queue_depth")
    return names


def test_every_panel_queries_a_metric_we_export() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported_names()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 12 and dashboard["uid"] == "artisan-jobs"
    for expr in exprs:
        for metric in re.findall(r"\b(artisan_[a-z_]+|flower_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", metric)
            assert metric.startswith("flower_") or base in exported, f"{metric} is not exported ({expr})"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
