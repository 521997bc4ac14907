"""The real one-node Slurm cluster the Slurm tests run against (contrib/slurm/single-node.sh).

CI (`.ci/run`) starts it before the tests and exports SLURM_CONF. Elsewhere the `slurm`
fixture starts it itself when it can (root, the Debian packages or apt-get), and otherwise
skips with a message naming the script; under `CI=true` a cluster that cannot be had is a
failure, never a skip: the Slurm tests must run on every CI run.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "contrib" / "slurm" / "single-node.sh"
DEFAULT_DIR = "/var/tmp/bantzd-slurm"


@dataclass(frozen=True)
class Cluster:
    """A cluster that answers: its config (for SLURM_CONF) and its folder."""

    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def script(self, command: str, timeout: float = 60) -> None:
        """`single-node.sh COMMAND` for this cluster (`stop-ctld`, `start-ctld`)."""
        res = subprocess.run(
            ["bash", str(SCRIPT), command, str(self.conf.parent)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 0, f"single-node.sh {command}: {res.stderr}"

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm command (`squeue`, `scontrol`, ...) against this cluster."""
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
        )


def _cannot(reason: str) -> Cluster:
    message = f"no Slurm cluster: {reason} (start one with {SCRIPT.relative_to(SCRIPT.parents[2])})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Slurm tests, but {message}")
    pytest.skip(message)


def cluster() -> Cluster:
    """The cluster of $SLURM_CONF (or the script's default folder), started if need be.

    Each pytest-xdist worker has its own session: a lock keeps two of them from starting
    the daemons at once."""
    from filelock import FileLock

    folder = os.environ.get("BANTZ_SLURM_DIR", DEFAULT_DIR)
    conf = Path(os.environ.get("SLURM_CONF") or Path(folder) / "slurm.conf")
    with FileLock(f"{conf.parent}.lock", timeout=900):
        return _cluster(conf)


def _cluster(conf: Path) -> Cluster:
    env = {**os.environ, "SLURM_CONF": str(conf)}
    status = subprocess.run(
        ["bash", str(SCRIPT), "status", str(conf.parent)], env=env, capture_output=True
    )
    if status.returncode == 0:
        return Cluster(conf)
    if os.geteuid() != 0:
        return _cannot("none answers, and starting one needs root")
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), "start", str(conf.parent)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return _cannot("the script did not finish within 600 s")
    if res.returncode != 0:
        return _cannot(f"the script failed: {res.stderr.strip()[-400:]}")
    return Cluster(conf)
