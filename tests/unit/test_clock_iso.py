"""`clock.iso` keeps the text of the last second it formatted: it must still say exactly
what datetime says for every timestamp, across second edges and zone changes."""

from __future__ import annotations

import random
import time
from datetime import datetime

import pytest

from bantzd.clock import iso


def reference(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def test_iso_matches_datetime_across_second_edges() -> None:
    rng = random.Random(18)
    base = 1_764_000_000.0
    for _ in range(20_000):
        whole = float(rng.randrange(-2_000_000_000, 4_000_000_000))
        frac = rng.choice([0.0, 0.25, 0.5, 0.9999994, 0.9999995, 0.9999996, 0.9999999])
        for ts in (whole + frac, base + rng.random() * 3, whole - frac):
            assert iso(ts) == reference(ts), ts
    assert iso(None) is None


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="no time.tzset")
def test_iso_follows_a_zone_change(monkeypatch: pytest.MonkeyPatch) -> None:
    ts = 1_764_000_000.5
    try:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
        assert iso(ts) == reference(ts) and iso(ts).endswith("+00:00")
        monkeypatch.setenv("TZ", "Asia/Kolkata")
        time.tzset()
        assert iso(ts) == reference(ts) and iso(ts).endswith("+05:30")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert iso(ts) == reference(ts)
