"""bench/run's summary: the figures (JSON lines) as one markdown table, with the target each one is held to.

Adds one derived figure, Node-RED against alumon on the same load: the ratio of their shares of the raw
InfluxDB ceiling, each measured against a ceiling taken in its own run (the machine's speed drifts between
runs; each share does not). Usage: ``python bench/table.py run/bench/figures.jsonl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from figures import emit


def peer_ratio(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    by_figure = {r["figure"]: r for r in rows}
    alumon, nodered = by_figure.get("ingest_ratio_to_ceiling_10r"), by_figure.get("nodered_ratio_to_ceiling_10r")
    if alumon is None or nodered is None or not alumon["value"]:
        return None
    return {"bench": "nodered", "figure": "nodered_vs_alumon_ingest_10r", "value": nodered["value"] / alumon["value"],
            "unit": "ratio", "note": "Node-RED's share of the ceiling over alumon ingest's, same load"}


def target_of(row: dict[str, Any]) -> str:
    if "target" in row:
        return f"{row['target']:,}"
    return ""


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if line.strip()]
    derived = peer_ratio(rows)
    if derived is not None:
        emit(**derived)
        rows.append({**derived, "value": round(derived["value"], 3)})
    print()
    print("| bench | figure | value | unit | target |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['bench']} | {r['figure']} | {r['value']:,} | {r['unit']} | {target_of(r)} |")


if __name__ == "__main__":
    main()
