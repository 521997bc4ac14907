"""The task file's keys for fitting the night (SPEC 11): `estimate:` and `checkpoints:`.

taskfile.py's checker calls these (it is over its size budget); they use its own readers,
so a bad value is reported like any other key's (`estimate: expected a duration...`).
"""

from __future__ import annotations

from typing import Any, Protocol

KEYS = ("estimate", "checkpoints")


class Checker(Protocol):
    def duration(self, node: Any, *, positive: bool = False) -> float: ...


def estimate(checker: Checker, node: Any) -> float:
    """`estimate: 3h`: how long one run takes, in seconds (more than zero)."""
    return checker.duration(node, positive=True)


def to_dict(spec: Any) -> dict[str, Any]:
    """The keys' entries in TaskSpec.to_dict."""
    return {"estimate": spec.estimate, "checkpoints": spec.checkpoints}
