"""How much memory a task's processes use, for `resources: {memory: ...}` limits.

A task's processes are its process group (the worker runs in its own session, so its pgid is
the wrapper's pid), every descendant of that pid, and, where the attempt has a cgroup of
its own (`bantzd.workers.escape`), everything in that cgroup: so a process that left with
`setsid` and whose parent has died is still counted. Without a cgroup such a process (now
the supervisor's child, not the wrapper's) is not. One pass over /proc/*/stat finds them
all and gives their resident size: about 15 µs of CPU per process on the machine, so a few
ms for a few hundred processes, once per probe interval. `tree_rss_many` measures every
running task in that one pass.

RSS counts pages shared between processes once per process: a PyTorch job whose DataLoader
workers were forked from a 10 GiB parent reads as 10 GiB per worker. `tree_pss` shares each
page out among the processes that map it (the kernel's proportional set size), which is the
honest total, but reading it walks every process's page tables (smaps_rollup), so it costs
far more. `over_limit` does the cheap measure first and the exact one only when the cheap
one is over: the supervisor stops a task for `memory limit` on its PSS.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

import psutil

from bantzd.workers import escape

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_PROC = "/proc"
_LINUX = sys.platform.startswith("linux")


def tree_rss(root: int) -> int:
    """Resident bytes of process group `root` and every descendant of pid `root`."""
    return tree_rss_many([root])[root]


def tree_rss_many(roots: Iterable[int]) -> dict[int, int]:
    """`tree_rss` of several roots (pgid = leader pid) in one pass over the processes."""
    roots = list(roots)
    table = _process_table()
    return {root: sum(table[pid][2] for pid in _members(root, table)) for root in roots}


def tree_pids(root: int) -> set[int]:
    """The pids `tree_rss(root)` adds up."""
    return _members(root, _process_table())


def tree_pss(root: int) -> int:
    """Proportional set size (bytes) of the processes of `tree_rss(root)`: shared pages
    divided among the processes that share them. Costs a page-table walk per process."""
    total = 0
    for pid in tree_pids(root):
        pss = _pss(pid)
        if pss is not None:
            total += pss
    return total


def over_limit(root: int, limit: int) -> int | None:
    """The task's memory when it is over `limit` bytes (PSS), else None.

    The RSS pass decides almost every time on its own: PSS is never more than RSS, so it is
    read only when RSS is over the limit.
    """
    if tree_rss(root) <= limit:
        return None
    pss = tree_pss(root)
    return pss if pss > limit else None


# --- the process table --------------------------------------------------------------------


def _process_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, pgid, rss bytes) of every process we can see."""
    if not _LINUX:
        return _process_table_psutil()
    table: dict[int, tuple[int, int, int]] = {}
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        data = escape.read_proc_stat(name)
        if data is None:  # gone since listdir, or not ours to read
            continue
        # The command name (field 2) is in parentheses and may hold spaces or ")".
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            # fields[0] is field 3 (state): ppid 4, pgrp 5, rss 24 (pages)
            table[int(name)] = (int(fields[1]), int(fields[2]), int(fields[21]) * _PAGE)
        except (IndexError, ValueError):
            continue
    return table


def _process_table_psutil() -> dict[int, tuple[int, int, int]]:
    table: dict[int, tuple[int, int, int]] = {}
    for proc in psutil.process_iter(["ppid", "memory_info"]):
        try:
            pgid = os.getpgid(proc.pid)
        except OSError:
            continue
        mem = proc.info.get("memory_info")
        table[proc.pid] = (proc.info.get("ppid") or 0, pgid, mem.rss if mem else 0)
    return table


def _members(root: int, table: dict[int, tuple[int, int, int]]) -> set[int]:
    children: dict[int, list[int]] = {}
    members = set()
    for pid, (ppid, pgid, _rss) in table.items():
        children.setdefault(ppid, []).append(pid)
        if pgid == root:
            members.add(pid)
    if root in table:
        members.add(root)
        # The wrapper's cgroup: one small read while the attempt runs.
        members.update(p for p in escape.in_cgroup(escape.cgroup_of(root)) if p in table)
    stack = list(members)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in members:
                members.add(child)
                stack.append(child)
    return members


def _pss(pid: int) -> int | None:
    if _LINUX:
        try:
            with open(f"{_PROC}/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    try:
        info = psutil.Process(pid).memory_full_info()
    except (psutil.Error, OSError):
        return None
    return int(getattr(info, "pss", 0) or getattr(info, "uss", 0) or info.rss)
