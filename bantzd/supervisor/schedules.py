"""The schedules of a home, and making their firings' tasks exactly once (SPEC 9).

`Schedules` holds every accepted schedule (its spec, the bytes of schedule.yaml, its
state.json) for the lock holder: the supervisor, which fires them each tick
(`fire_due`), or a CLI command applying a control request while none runs. What fires when
is supervisor/firing.py's pure `plan`; this module applies it.

Making one firing's task, `NAME@TIME`:

1. its task file is written durably to `schedules/NAME/firing.yaml` (`fire.after_write`);
2. the file is moved into `tasks/<id>/task.yaml` by the store, the spool's commit point
   (`fire.after_create`), and the task is flushed (`fire.after_task`);
3. the schedule's state.json records the firing and its next slot.

A crash anywhere leaves the next lock holder able to tell what happened, because the task
carries the firing in its name: before a firing is made, a task of that name is looked for,
and if one exists (made before the crash; its state.json may have been rebuilt from
task.yaml) it is the firing's task, and no second one is made. A leftover firing.yaml that
never became a task is removed: its slot is still pending, and is made again (on time, so
whatever `catch_up` says). The unique key of an instance (SPEC 10, queue/unique.py) is its
name, `instance_key`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bantzd.clock import Clock, epoch, iso
from bantzd.crash import crash_point
from bantzd.paths import Home
from bantzd.queue import schedules as disk
from bantzd.queue.schedulefile import ScheduleSpec, instance_yaml, parse_spool_file
from bantzd.queue.states import Status
from bantzd.queue.store import Store, task_ids
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskFileError, TaskSpec, parse_task
from bantzd.supervisor import firing
from bantzd.supervisor.intake import Accepted, ScheduleAccepted, new_state

log = logging.getLogger("bantzd.schedules")

# An instance in one of these keeps the next firing of an `overlap: skip` schedule back.
BUSY = frozenset({Status.QUEUED, Status.HELD, Status.WAITING_HUMAN, Status.RUNNING})


@dataclass
class Entry:
    """One accepted schedule."""

    spec: ScheduleSpec
    data: bytes  # schedule.yaml
    state: disk.ScheduleState

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def jitter(self) -> int:
        return firing.jitter_of(self.name, self.spec.rule)


@dataclass(frozen=True)
class Made:
    """A firing's task, made now (`spec` set, for the table) or found made before."""

    state: TaskState
    spec: TaskSpec | None


@dataclass(frozen=True)
class Maker:
    """What making an instance needs from its host: the store, the tasks by id, who
    approves what, how a new task joins the host's table, and the reason a queued task
    waits with (offline: for a supervisor)."""

    store: Store
    states: Mapping[int, TaskState]
    approval_categories: Iterable[str]
    add: Callable[[TaskState, TaskSpec], None]
    queued_reason: str | None = None


def instance_key(schedule: str, slot: datetime) -> str:
    """The unique key (SPEC 10) of a firing's task: its name, `NAME@TIME`."""
    return firing.instance_name(schedule, slot)


class Schedules:
    """Every schedule of a home, loaded from `schedules/`."""

    def __init__(self, home: Home, clock: Clock) -> None:
        self.home = home
        self.clock = clock
        self.entries: dict[str, Entry] = {}

    # loading -----------------------------------------------------------------------------

    def load(self, states: Mapping[int, TaskState], store: Store | None = None) -> None:
        """Read every schedule; mend what a crash left (see the module's docstring):
        with `store`, an adopted task whose state.json was rebuilt gets its schedule back."""
        now = self.clock.time()
        self.entries.clear()
        for name in disk.schedule_names(self.home):
            data = disk.read_schedule_yaml(self.home, name)
            if data is None:
                continue
            try:
                spec = parse_spool_file(data, default_name=name, check_ends=False)
            except TaskFileError as e:
                log.error("schedule %s: schedule.yaml can no longer be read: %s", name, e)
                continue
            if not isinstance(spec, ScheduleSpec) or spec.name != name:
                log.error("schedule %s: schedule.yaml is not this schedule's file", name)
                continue
            state = disk.read_schedule_state(self.home, name)
            entry = Entry(spec, data, state or disk.ScheduleState(name, accepted=iso(now)))
            leftover = disk.leftover_firing(self.home, name)
            if leftover is not None:
                leftover.unlink()  # never a task: its slot is still pending
            if state is None or state.source != disk.digest(data):
                self._reschedule(entry, now)  # new, or replaced before its state was written
            self._adopt_newest(entry, states, store)
            self.entries[name] = entry
            self._save(entry)

    def _adopt_newest(
        self, entry: Entry, states: Mapping[int, TaskState], store: Store | None
    ) -> None:
        """A task made for a firing whose state.json write a crash prevented."""
        prefix = entry.name + "@"
        newest = max((s.id for s in states.values() if s.name.startswith(prefix)), default=None)
        if newest is None:
            return
        task = states[newest]
        slot = _slot_of(entry, task)
        if slot is not None and task.schedule is None and store is not None:
            store.update(task, schedule=entry.name, firing=firing.slot_text(slot))
        if (entry.state.last_task or 0) >= newest:
            return
        entry.state.last_task = newest
        entry.state.remember("instances", newest)
        if slot is not None:
            entry.state.last_fired = firing.slot_text(slot)
            pending = epoch(entry.state.next_slot)
            if pending is not None and pending <= slot.timestamp():
                self._set_next(entry, firing.next_slot(entry.spec.rule, slot.timestamp()))

    def _reschedule(self, entry: Entry, now: float) -> None:
        entry.state.source = disk.digest(entry.data)
        self._set_next(entry, firing.next_slot(entry.spec.rule, now))

    def _set_next(self, entry: Entry, slot: datetime | None) -> None:
        entry.state.next_slot = firing.slot_text(slot) if slot is not None else None
        fire_at = slot.timestamp() + entry.jitter if slot is not None else None
        entry.state.next_fire = (
            datetime.fromtimestamp(fire_at, slot.tzinfo).isoformat(timespec="seconds")
            if slot is not None and fire_at is not None
            else None
        )

    def _save(self, entry: Entry) -> None:
        disk.write_schedule_state(self.home, entry.state)

    # accepting ---------------------------------------------------------------------------

    def accept(self, item: ScheduleAccepted, states: Mapping[int, TaskState]) -> str | None:
        """Install a schedule file from the spool (replacing one of the same name); None,
        or the problem that rejects it."""
        name = item.spec.name
        clash = next((s for s in states.values() if s.name == name), None)
        if clash is not None:
            return (
                f"name: {name!r} is the name of task {clash.id} ({clash.status}); a schedule "
                f"needs a name no task has (its tasks are named {name}@TIME): rename it, or "
                f"remove the task with `bantzd clean`"
            )
        now = self.clock.time()
        old = self.entries.get(name)
        disk.install(self.home, name, item.path)
        state = old.state if old is not None else disk.ScheduleState(name, accepted=iso(now))
        entry = Entry(item.spec, item.data, state)
        self._reschedule(entry, now)  # running instances go on; only the next is new
        self.entries[name] = entry
        self._save(entry)
        verb = "replaced" if old is not None else "accepted"
        log.info("%s schedule %s (next firing %s)", verb, name, entry.state.next_fire)
        return None

    # firing ------------------------------------------------------------------------------

    def due_in(self, now: float) -> float | None:
        """Seconds until the next firing of any schedule not paused (None: none)."""
        times = [
            epoch(e.state.next_fire)
            for e in self.entries.values()
            if not e.state.paused and e.state.next_fire is not None
        ]
        known = [t for t in times if t is not None]
        return max(0.0, min(known) - now) if known else None

    def fire_due(self, maker: Maker) -> list[Made]:
        """Make every firing that is due; the tasks made."""
        now = self.clock.time()
        made = []
        for entry in list(self.entries.values()):
            if entry.state.paused:
                continue
            decided = firing.plan(entry.spec.rule, entry.jitter, epoch(entry.state.next_slot), now)
            if decided is None:
                continue
            result = self._apply(entry, decided, maker, now)
            if result is not None:
                made.append(result)
        return made

    def _apply(self, entry: Entry, decided: firing.Plan, maker: Maker, now: float) -> Made | None:
        state = entry.state
        if decided.missed:
            why = "catch_up: none" if decided.fire is None else "missed; one made up at most"
            state.remember("missed", _missed(decided.missed, now, why))
            maker.store.note(
                "schedule_missed", schedule=entry.name, count=len(decided.missed), reason=why
            )
        result = None
        if decided.fire is not None:
            busy = self._busy(entry, maker.states)
            if busy is not None and entry.spec.rule.overlap == "skip":
                because = f"task {busy.id} ({busy.status})"
                state.remember(
                    "skipped",
                    {"firing": firing.slot_text(decided.fire), "at": iso(now), "because": because},
                )
                maker.store.note("schedule_skipped", schedule=entry.name, because=because)
                log.info("schedule %s: firing skipped, %s still unfinished", entry.name, because)
            else:
                result = self.make(entry, decided.fire, maker, now)
        self._set_next(entry, decided.next)
        self._save(entry)
        return result

    def _busy(self, entry: Entry, states: Mapping[int, TaskState]) -> TaskState | None:
        last = entry.state.last_task
        task = states.get(last) if last is not None else None
        return task if task is not None and task.status in BUSY else None

    def make(self, entry: Entry, slot: datetime, maker: Maker, now: float) -> Made:
        """Make the task of firing `slot`, or find the one made before (module docstring);
        then the firing is recorded in the schedule's state (the caller saves it)."""
        name = instance_key(entry.name, slot)
        existing = next((s for s in maker.states.values() if s.name == name), None)
        if existing is None and (found := _unloaded_task(self.home, maker.states, name)):
            made = Made(found, None)  # offline, a folder without state.json: it is the task
        elif existing is not None:
            if existing.schedule is None:  # its state.json was rebuilt from task.yaml
                maker.store.update(existing, schedule=entry.name, firing=firing.slot_text(slot))
            made = Made(existing, None)
        else:
            data = instance_yaml(entry.data, name)
            spec = parse_task(data, default_name=name)  # the checks of every task file
            path = disk.write_firing(self.home, entry.name, data)
            crash_point("fire.after_write")
            task_id = maker.store.allocate_id()
            # The instance's unique key (SPEC 10) is its name: a `unique: NAME@TIME` file is
            # a duplicate of it while it is unfinished.
            item = Accepted(path, spec, key=name)
            task = new_state(item, task_id, now, maker.approval_categories, maker.queued_reason)
            task.schedule, task.firing = entry.name, firing.slot_text(slot)
            task.source = f"schedules/{entry.name}"
            maker.store.create(task, path)
            maker.add(task, spec)
            crash_point("fire.after_create")
            maker.store.note("schedule_fired", schedule=entry.name, task=task_id, firing=name)
            maker.store.flush()
            crash_point("fire.after_task")
            log.info("schedule %s fired: task %d (%s)", entry.name, task_id, name)
            made = Made(task, spec)
        state = entry.state
        if made.state.id != state.last_task:
            state.last_task = made.state.id
            state.remember("instances", made.state.id)
        fired = epoch(state.last_fired)
        if fired is None or slot.timestamp() > fired:
            state.last_fired = firing.slot_text(slot)
        return made

    # control: pause, resume, remove, fire --------------------------------------------------

    def pause(self, name: str, paused: bool) -> str:
        entry = self._entry(name)
        if entry.state.paused == paused:
            return f"schedule {name} is already {'paused' if paused else 'running'}"
        entry.state.paused = paused
        if not paused:  # firings passed while paused are not made up
            self._set_next(entry, firing.next_slot(entry.spec.rule, self.clock.time()))
        self._save(entry)
        if paused:
            return f"schedule {name} paused: it does not fire until `bantzd schedule resume`"
        return f"schedule {name} resumed: next firing {_when(entry.state.next_fire)}"

    def remove(self, name: str) -> str:
        entry = self._entry(name)
        disk.remove(self.home, name)
        del self.entries[name]
        kept = len(entry.state.instances)
        return f"schedule {name} removed (its {kept} task(s) made so far stay)"

    def fire_now(self, name: str, at: float, maker: Maker) -> Made:
        """`bantzd schedule fire`: a firing now (the minute of `at`, the command's time,
        so that a request applied twice after a crash makes one task)."""
        entry = self._entry(name)
        made = self.make(entry, firing.manual_slot(entry.spec.rule, at), maker, self.clock.time())
        self._save(entry)
        return made

    def _entry(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise KeyError(f"no schedule named {name!r} (schedules: {known})")
        return entry


def _unloaded_task(home: Home, states: Mapping[int, TaskState], name: str) -> TaskState | None:
    """A task folder named `name` that `states` lacks: one whose state.json a crash kept
    from being written (an offline command's view has only complete tasks; the next
    supervisor rebuilds its state from task.yaml)."""
    for task_id in task_ids(home):
        if task_id in states:
            continue
        try:
            spec = parse_task(
                home.task_dir(task_id).joinpath("task.yaml").read_bytes(), default_name=""
            )
        except (OSError, TaskFileError):
            continue
        if spec.name == name:
            return TaskState(id=task_id, name=name, reason="state rebuilt after a crash")
    return None


def _slot_of(entry: Entry, task: TaskState) -> datetime | None:
    """The firing time of an instance: its `firing` field, else read back from its name."""
    if task.firing is not None and (ts := epoch(task.firing)) is not None:
        return datetime.fromtimestamp(ts, firing.zone_of(entry.spec.rule))
    stamp = task.name.rpartition("@")[2][:16]
    try:
        naive = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return naive.replace(tzinfo=firing.zone_of(entry.spec.rule))


def _missed(slots: list[datetime], now: float, why: str) -> dict[str, object]:
    return {
        "firing": firing.slot_text(slots[-1]),
        "first": firing.slot_text(slots[0]),
        "count": len(slots),
        "at": iso(now),
        "because": why,
    }


def _when(text: str | None) -> str:
    return text.replace("T", " ") if text else "none (it has ended)"
