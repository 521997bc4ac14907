"""`bantzd plan` through the real CLI, with no supervisor (SPEC 11)."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta


def test_plan_forecasts_without_a_supervisor_and_changes_nothing(bantz, home) -> None:
    bantz("init", check=True)
    spool = home / "spool"
    (spool / "a.yaml").write_text("name: big\nrun: 'true'\nestimate: 2h\n")
    (spool / "b.yaml").write_text("name: small\nrun: 'true'\nestimate: 20m\nafter: [big]\n")
    (spool / "c.yaml").write_text("name: huge\nrun: 'true'\nestimate: 3d\n")
    old = time.time() - 60
    for path in spool.glob("*.yaml"):
        os.utime(path, (old, old))
    # Ten hours ahead, so the 2h task fits whatever the time of day the test runs.
    until = (datetime.now() + timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M")
    res = bantz("plan", "--json", "--until", until, check=True)
    data = json.loads(res.stdout)
    by_name = {t["name"]: t for t in data["tasks"]}
    assert set(by_name) == {"big", "small"}
    assert by_name["small"]["start"] == by_name["big"]["end"]
    assert by_name["big"]["estimate"] == "2h from the task file"
    [held] = data["not_fitting"]
    assert held["name"] == "huge"
    assert held["reason"].startswith(f"would not finish before {until[-5:]} (estimate 3d from")
    assert not any((home / "tasks").iterdir())  # the queue is untouched
    assert sorted(p.name for p in spool.glob("*.yaml")) == ["a.yaml", "b.yaml", "c.yaml"]

    text = bantz("plan", "--until", until, check=True).stdout
    assert "big" in text and "Will not run tonight:" in text and "huge: would not" in text
    mermaid = bantz("plan", "--mermaid", "--until", until, check=True).stdout
    assert mermaid.startswith("```mermaid\ngantt") and "night ends :milestone" in mermaid
    bad = bantz("plan", "--until", "soon")
    assert bad.returncode == 2 and "--until" in bad.stderr
