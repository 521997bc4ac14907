"""Build the states a POSIX file system may be left in by a power cut (ALICE's model, simplified).

A crash after the first k operations keeps every operation before k that is *durable*:

* a write or truncate of a file is durable once an fsync/fdatasync of that file (or a
  sync) began after it completed;
* a directory operation (create, mkdir, rename, link, unlink, rmdir) is durable once every
  folder whose entries it changes was fsynced by a call that began after it completed
  (POSIX: an fsync of a file does not persist its name).

Any other operation before k may be lost. Exploring every subset is exponential, so each
crash point gets a few variants (`variants`): nothing lost (what a kill leaves), only the
durable operations kept, unsynced data lost but names kept, names undone but data kept,
unsynced appends torn in half, and each single unsynced name change undone or each file's
unsynced data lost on its own (reorderings: a later change kept, an earlier one lost).
Renames stay atomic (the file systems bantzd runs on journal them as one change).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tests.crashfs.model import FsState, Op

NEVER = 1 << 62
# How many single-operation variants a crash point gets, each of names and of files (the
# most recent ones: older unsynced operations were mostly covered at earlier points).
MAX_SINGLE = 6


def durable_at(ops: list[Op]) -> list[int]:
    """For each operation, the number of operations that must have completed before it is
    durable: a crash after k operations keeps operation i when durable_at(ops)[i] <= k."""
    result = [NEVER] * len(ops)
    # For each barrier target, the barriers in order, to search forward from each op.
    file_syncs: dict[int, list[Op]] = {}
    dir_syncs: dict[str, list[Op]] = {}
    syncs: list[Op] = []
    for op in ops:
        if op.kind == "sync":
            syncs.append(op)
        elif op.kind == "fsync" and op.is_dir:
            dir_syncs.setdefault(op.path, []).append(op)
        elif op.kind == "fsync":
            file_syncs.setdefault(op.inode, []).append(op)

    def first_after(barriers: list[Op], op: Op) -> int:
        best = NEVER
        for b in (*barriers, *syncs):
            if b.index > op.index and b.start > op.end:
                best = min(best, b.index + 1)
        return best

    for op in ops:
        if op.is_barrier:
            result[op.index] = op.index + 1
        elif op.is_data_op:
            result[op.index] = first_after(file_syncs.get(op.inode, []), op)
        else:
            result[op.index] = max(first_after(dir_syncs.get(d, []), op) for d in op.dirs())
    return result


@dataclass(frozen=True)
class CrashState:
    """One state a crash after `point` operations may leave."""

    point: int
    variant: str
    dropped: tuple[int, ...]  # operations left out
    torn: tuple[int, ...]  # writes kept only in part
    skipped: tuple[int, ...]  # kept operations that could not apply without a dropped one
    fs: FsState

    def explain(self, ops: list[Op], limit: int = 12, quiet: frozenset[str] = frozenset()) -> str:
        """What this state is, for a failure message (operations on `quiet` paths, such as
        a log file, are counted, not listed)."""
        last = ops[self.point - 1].describe() if self.point else "(nothing yet)"
        lines = [
            f"crash after {self.point} of {len(ops)} operations; the last one: {last}",
            f"variant: {self.variant}",
        ]
        for title, idx in (
            ("lost (not yet durable)", self.dropped),
            ("torn in half", self.torn),
            ("could not apply once those were lost", self.skipped),
        ):
            shown = [i for i in idx if ops[i].path not in quiet]
            if idx:
                lines.append(f"{title}:")
                lines += [f"  {ops[i].describe()}" for i in shown[:limit]]
                if len(shown) > limit:
                    lines.append(f"  ... and {len(shown) - limit} more")
                if len(shown) < len(idx):
                    lines.append(f"  (and {len(idx) - len(shown)} on {', '.join(sorted(quiet))})")
        return "\n".join(lines)


def build(
    snapshot: FsState,
    ops: list[Op],
    point: int,
    variant: str,
    drop: frozenset[int] = frozenset(),
    tear: frozenset[int] = frozenset(),
) -> CrashState:
    """Replay the first `point` operations from `snapshot`, without `drop`, with `tear` cut."""
    fs = snapshot.copy()
    skipped = []
    for op in ops[:point]:
        if op.index in drop or op.is_barrier:
            continue
        if not fs.apply(op.cut() if op.index in tear else op):
            skipped.append(op.index)
    return CrashState(point, variant, tuple(sorted(drop)), tuple(sorted(tear)), tuple(skipped), fs)


Variant = tuple[str, frozenset[int], frozenset[int]]


def variants(ops: list[Op], durable: list[int], point: int) -> Iterator[Variant]:
    """(name, operations to drop, writes to tear) for the crash states of one point."""
    lost = [op for op in ops[:point] if durable[op.index] > point and not op.is_barrier]
    names = [op.index for op in lost if op.is_dir_op]
    data = [op.index for op in lost if op.is_data_op]
    none: frozenset[int] = frozenset()
    yield "nothing lost (as a kill leaves it)", none, none
    if not lost:
        return
    yield "only durable operations kept", frozenset(names + data), none
    if names and data:
        yield "unsynced data lost, names kept", frozenset(data), none
        yield "unsynced names undone, data kept", frozenset(names), none
    appends = frozenset(
        i for i in data if ops[i].kind == "write" and ops[i].append and len(ops[i].data) > 1
    )
    if appends:
        yield "unsynced appends torn in half", none, appends
    if len(names) > 1:
        for i in names[-MAX_SINGLE:]:
            yield f"only this name change undone: {ops[i].describe()}", frozenset([i]), none
    by_file: dict[int, list[int]] = {}
    for i in data:
        by_file.setdefault(ops[i].inode, []).append(i)
    if len(by_file) > 1:
        for inode in list(by_file)[-MAX_SINGLE:]:
            group = by_file[inode]
            yield f"only the unsynced data of {ops[group[-1]].path} lost", frozenset(group), none


def crash_states(snapshot: FsState, ops: list[Op]) -> Iterator[CrashState]:
    """Every variant of every crash point, from "before the first operation" to "after the
    last" (duplicates included: the caller checks each distinct state once)."""
    durable = durable_at(ops)
    for point in range(len(ops) + 1):
        for name, drop, tear in variants(ops, durable, point):
            yield build(snapshot, ops, point, name, drop, tear)


def floor_state(snapshot: FsState, ops: list[Op], durable: list[int], point: int) -> FsState:
    """What is certain to be on disk after a crash at `point`: the durable operations only."""
    drop = frozenset(
        op.index for op in ops[:point] if durable[op.index] > point and not op.is_barrier
    )
    return build(snapshot, ops, point, "floor", drop).fs
