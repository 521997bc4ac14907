"""`bantzd demo --executor slurm`: the bundled examples as Slurm jobs, when a cluster answers.

The demo's temporary home must be where the cluster's nodes can read and write it (on a
one-node cluster, such as contrib/slurm/single-node.sh's, any folder is).
"""

from __future__ import annotations

from bantzd.errors import UsageError
from bantzd.paths import Home


def check_cluster() -> str:
    """A line naming the cluster that answers, or UsageError saying why none does."""
    from bantzd.workers import slurmcli

    env = slurmcli.command_env()
    try:
        jobs = slurmcli.parse_squeue_json(slurmcli.run(["squeue", "--json"], env=env, timeout=10))
        out = slurmcli.run(["sinfo", "-h", "-o", "%P %D %T"], env=env, timeout=15)
    except slurmcli.SlurmError as e:
        raise UsageError(
            f"--executor slurm: no Slurm cluster answers here ({e}); on one machine, "
            "contrib/slurm/single-node.sh start (as root) makes one, then "
            "export SLURM_CONF=/var/tmp/bantzd-slurm/slurm.conf"
        ) from None
    parts = ", ".join(line.strip() for line in out.splitlines() if line.strip())
    return f"Slurm answers: partitions {parts or '?'}; {len(jobs)} job(s) known to it"


def use_slurm(home: Home) -> None:
    """Make the demo home's config run every task through Slurm, polled every second."""
    text = home.config.read_text()
    text = text.replace('\nkind = "local"', '\nkind = "slurm"', 1)
    text = text.replace('poll_interval = "5s"', 'poll_interval = "1s"', 1)
    if 'kind = "slurm"' not in text:
        text += '\n[executor]\nkind = "slurm"\n'
    home.config.write_text(text)
