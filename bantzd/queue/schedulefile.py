"""A schedule file: a task file with a `schedule:` key (SPEC 9).

The rest of the file is the task each firing makes, checked by taskfile.py's own checks on
the same YAML nodes (so its messages, lines and columns are those of any task file); the
`schedule:` mapping is checked here, every problem named by its key (`schedule.cron: ...`).

The rule, in short (the README's "Schedules" section says it for users):

* exactly one of `cron:` (five fields, read by cronsim, which follows Debian's cron, DST
  nights included), `every:` (whole minutes, 1m to 1d, counted from local midnight each
  day, like cron's `*/N`) or `at:` (HH:MM or a list of them, optionally with `days:`);
* `tz` (an IANA zone; default the machine's), `catch_up: none|one` (default one),
  `overlap: skip|queue` (default skip), `jitter` (a delay under a day, the same for every
  firing: derived from the name), `ends` (a date, inclusive, or a date-time);
* a schedule's name has no `@`: its tasks are named `NAME@YYYY-MM-DDTHH:MM`.

Only this module and supervisor/firing.py know the rule's shape; instance task files are
made from the document with `instance_yaml`, which drops `schedule:` and sets `name:`.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bantzd import units
from bantzd.queue.taskfile import (
    MAX_TASK_FILE_BYTES,
    BadValue,
    NodeChecker,
    TaskSpec,
    check_task_root,
    problem_order,
)
from bantzd.queue.yamlnodes import TAG, Problem, TaskFileError, compose, decode

SCHEDULE_KEY = "schedule"
SCHEDULE_KEYS = ("cron", "every", "at", "days", "tz", "catch_up", "overlap", "jitter", "ends")
RULE_KEYS = ("cron", "every", "at")
_ALIASES = {
    "crontab": "cron", "interval": "every", "period": "every", "times": "at", "time": "at",
    "timezone": "tz", "zone": "tz", "weekdays": "days", "until": "ends", "end": "ends",
    "catchup": "catch_up", "misfire": "catch_up", "concurrency": "overlap", "delay": "jitter",
}  # fmt: skip
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_WORDS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CATCH_UP = ("none", "one")
OVERLAP = ("skip", "queue")
MIN_EVERY = 60  # instances are named to the minute
MAX_EVERY = 86400
MAX_JITTER = 86400 - 1


@dataclass(frozen=True)
class Rule:
    """When a schedule fires. Times of day are local to `tz` (None: the machine's zone)."""

    kind: str  # "cron" | "every" | "at"
    cron: str | None = None
    every: int | None = None  # seconds, whole minutes
    at: tuple[time, ...] = ()
    days: tuple[int, ...] = ()  # 0 is Monday; () every day
    tz: str | None = None
    catch_up: str = "one"
    overlap: str = "skip"
    jitter: int = 0  # seconds
    ends: date | datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cron": self.cron,
            "every": self.every,
            "at": [t.strftime("%H:%M") for t in self.at],
            "days": [DAY_NAMES[d] for d in self.days],
            "tz": self.tz,
            "catch_up": self.catch_up,
            "overlap": self.overlap,
            "jitter": self.jitter,
            "ends": self.ends.isoformat() if self.ends is not None else None,
        }


@dataclass(frozen=True)
class ScheduleSpec:
    """A valid schedule file: its name, its rule, and the task each firing makes (named
    like the schedule here; each instance gets its own name)."""

    name: str
    rule: Rule
    task: TaskSpec


def parse_spool_file(
    data: bytes | str, *, default_name: str, now: float | None = None, check_ends: bool = True
) -> TaskSpec | ScheduleSpec:
    """A task file's spec, or a schedule file's; raises TaskFileError listing every problem.

    `now` is what `ends:` must not be before (default: the current time); `check_ends=False`
    reads an accepted schedule again after its end (it is still a schedule, one that no
    longer fires).
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_TASK_FILE_BYTES:
        raise TaskFileError(
            [Problem(f"file is {units.format_size(len(raw))}; task files are limited to 1 MiB")]
        )
    root = compose(decode(raw))
    found = _split(root)
    if found is None:
        spec, problems = check_task_root(root, default_name)
        if spec is None:
            raise TaskFileError(problems)
        return spec
    task_root, _, rule_node = found
    spec, problems = check_task_root(task_root, default_name)
    checker = _ScheduleChecker(_time.time() if now is None else now, check_ends)
    rule = checker.rule(rule_node)
    problems = [*problems, *checker.problems]
    if spec is not None and ("@" in spec.name or spec.name.startswith(".")):
        problems.append(_name_problem(task_root, spec.name))
    if problems or spec is None or rule is None:
        raise TaskFileError(sorted(problems, key=problem_order))
    return ScheduleSpec(spec.name, rule, spec)


def is_schedule_file(data: bytes) -> bool:
    """Whether a readable document has a top-level `schedule:` key (no validation)."""
    try:
        return _split(compose(decode(data))) is not None
    except TaskFileError:
        return False


def instance_yaml(schedule_yaml: bytes, instance_name: str) -> bytes:
    """The task file of one firing: the schedule file without `schedule:`, with `name:`
    set to the instance's name. Scalars keep their written form (`010`, `07:00`, `yes`)
    and style; comments are not kept."""
    root = compose(decode(schedule_yaml))
    found = _split(root)
    if found is None:
        raise ValueError("not a schedule file")
    task_root = found[0]
    name_node = ScalarNode(TAG + "str", instance_name, style='"')
    pairs = [(k, v) for k, v in task_root.value if not _is_key(k, "name")]
    name_key = ScalarNode(TAG + "str", "name")
    task_root.value = [(name_key, name_node), *pairs]
    text = yaml.serialize(task_root, Dumper=yaml.SafeDumper, allow_unicode=True)
    header = f"# made by schedule {instance_name.rpartition('@')[0]!r} for this firing\n"
    return (header + text).encode()


def _is_key(node: Node, name: str) -> bool:
    return isinstance(node, ScalarNode) and node.tag != TAG + "merge" and node.value == name


def _split(root: Node) -> tuple[MappingNode, Node, Node] | None:
    """(the document without its `schedule:` entry, that key, its value), or None."""
    if not isinstance(root, MappingNode):
        return None
    found = [(k, v) for k, v in root.value if _is_key(k, SCHEDULE_KEY)]
    if not found:
        return None
    key, value = found[-1]
    rest = [(k, v) for k, v in root.value if not _is_key(k, SCHEDULE_KEY)]
    task_root = MappingNode(
        root.tag, rest, root.start_mark, root.end_mark, flow_style=root.flow_style
    )
    return task_root, key, value


def _name_problem(root: MappingNode, name: str) -> Problem:
    node = next((v for k, v in root.value if _is_key(k, "name")), None)
    line = column = None
    if node is not None and node.start_mark is not None:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
    key = "name" if node is not None else None
    if name.startswith("."):
        message = f"a schedule's name cannot start with '.' (got {name!r})"
    else:
        message = f"a schedule's name cannot contain '@' (got {name!r}): its tasks are NAME@TIME"
    return Problem(message, key, line, column)


class _ScheduleChecker(NodeChecker):
    """The `schedule:` mapping's checks; problems are named `schedule.KEY`."""

    def __init__(self, now: float, check_ends: bool) -> None:
        super().__init__()
        self.now = now
        self.check_ends = check_ends

    def rule(self, node: Node) -> Rule | None:
        if isinstance(node, ScalarNode) and node.tag != TAG + "null":
            # `schedule: "0 23 * * *"` is what a crontab user writes first.
            self.problem(
                f"expected a mapping like {{cron: '0 23 * * 1-5'}}, got {_short(node)}",
                SCHEDULE_KEY,
                node,
            )
            return None
        try:
            entries = self.items(node, SCHEDULE_KEY, SCHEDULE_KEYS, _ALIASES)
        except BadValue as e:
            self.problem(e.message, SCHEDULE_KEY, e.node or node)
            return None
        values: dict[str, Any] = {}
        for key, (_, value_node) in entries.items():
            values[key] = self.each(f"{SCHEDULE_KEY}.{key}", value_node, getattr(self, "_" + key))
        kinds = [k for k in entries if k in RULE_KEYS]
        if not kinds:
            self.problem("give one of cron, every, at: when it fires", SCHEDULE_KEY, node)
        elif len(kinds) > 1:
            self.problem(
                f"{' and '.join(kinds)} each say when it fires; give only one of cron, every, at",
                f"{SCHEDULE_KEY}.{kinds[1]}",
                entries[kinds[1]][0],
            )
        if "days" in entries and "at" not in entries:
            self.problem(
                "only with at: (for cron, the days are the expression's fifth field)",
                f"{SCHEDULE_KEY}.days",
                entries["days"][0],
            )
        jitter, every = values.get("jitter"), values.get("every")
        if jitter is not None and every is not None and jitter >= every:
            self.problem(
                f"{units.format_duration(jitter)} is not less than every: "
                f"{units.format_duration(every)}; firings would overtake each other",
                f"{SCHEDULE_KEY}.jitter",
                entries["jitter"][1],
            )
        ends = values.get("ends")
        zone_ok = "tz" not in entries or values.get("tz") is not None
        if ends is not None and zone_ok:
            self._check_ends(ends, values.get("tz"), entries)
        if self.problems:
            return None
        return Rule(
            kind=kinds[0],
            cron=values.get("cron"),
            every=values.get("every"),
            at=values.get("at", ()),
            days=values.get("days", ()),
            tz=values.get("tz"),
            catch_up=values.get("catch_up", "one"),
            overlap=values.get("overlap", "skip"),
            jitter=values.get("jitter", 0),
            ends=ends,
        )

    def _check_ends(self, ends: date | datetime, tz: str | None, entries: dict) -> None:
        if not self.check_ends:
            return
        if end_instant(ends, tz) < self.now:
            self.problem(
                f"{ends.isoformat()} is in the past: this schedule would never fire",
                f"{SCHEDULE_KEY}.ends",
                entries["ends"][1],
            )

    # one method per key ------------------------------------------------------------------

    def _cron(self, node: Node, path: str) -> str:
        from cronsim import CronSim, CronSimError

        expr = " ".join(self.text(node, "a cron expression like '0 23 * * 1-5'").split())
        fields = expr.split(" ")
        if len(fields) != 5:
            raise BadValue(
                f"{expr!r} has {len(fields)} field(s); a cron expression has five: "
                "minute hour day-of-month month day-of-week, like '0 23 * * 1-5'",
                node,
            )
        try:
            it = CronSim(expr, datetime.now(UTC))
        except CronSimError as e:
            why = str(e).rstrip(".")
            if why == "Bad day-of-month" and _valid_alone(fields):
                why = "no month has that day (like the 31st of February)"
            raise BadValue(f"{expr!r} cannot fire: {why}", node) from None
        try:
            next(it)
        except StopIteration:
            raise BadValue(f"{expr!r} never fires in the next 50 years", node) from None
        return expr

    def _every(self, node: Node, path: str) -> int:
        seconds = self.duration(node, positive=True)
        if seconds < MIN_EVERY or seconds % 60:
            raise BadValue(
                f"must be whole minutes, at least 1m (tasks are named to the minute), "
                f"got {_short(node)}",
                node,
            )
        if seconds > MAX_EVERY:
            raise BadValue(
                f"at most 1d, got {_short(node)}; for longer periods use cron, or at: with days:",
                node,
            )
        return int(seconds)

    def _at(self, node: Node, path: str) -> tuple[time, ...]:
        texts = self.text_list(node, path, "a time of day like 09:00")
        items = node.value if isinstance(node, SequenceNode) else [node]
        out = set()
        for text, item in zip(texts, items, strict=True):
            try:
                when = units.parse_clock(text)
            except ValueError as e:
                raise BadValue(str(e), item) from None
            if when.second:
                raise BadValue(f"{text!r}: give HH:MM, without seconds", item)
            out.add(when)
        return tuple(sorted(out))

    def _days(self, node: Node, path: str) -> tuple[int, ...]:
        texts = self.text_list(node, path, "a day like mon or a range like mon-fri")
        items = node.value if isinstance(node, SequenceNode) else [node]
        out: set[int] = set()
        for text, item in zip(texts, items, strict=True):
            for part in text.split(","):
                first, dash, last = part.strip().partition("-")
                a, b = _day(first), _day(last) if dash else _day(first)
                if a is None or b is None:
                    raise BadValue(
                        f"{text!r} is not a day: use mon, tue, wed, thu, fri, sat, sun, "
                        "or a range like mon-fri",
                        item,
                    )
                out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        return tuple(sorted(out))

    def _tz(self, node: Node, path: str) -> str:
        from zoneinfo import ZoneInfo

        name = self.text(node, "a time zone like Europe/Istanbul").strip()
        try:
            ZoneInfo(name)
        except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise BadValue(f"unknown time zone {name!r}{_zone_hint(name)}", node) from None
        return name

    def _catch_up(self, node: Node, path: str) -> str:
        return self._word(node, CATCH_UP)

    def _overlap(self, node: Node, path: str) -> str:
        return self._word(node, OVERLAP)

    def _word(self, node: Node, allowed: tuple[str, ...]) -> str:
        if isinstance(node, ScalarNode) and node.value.strip().lower() in allowed:
            return node.value.strip().lower()
        raise BadValue(f"expected {' or '.join(allowed)}, got {_short(node)}", node)

    def _jitter(self, node: Node, path: str) -> int:
        seconds = self.duration(node)
        if seconds > MAX_JITTER:
            raise BadValue(f"must be under a day, got {_short(node)}", node)
        return int(seconds)

    def _ends(self, node: Node, path: str) -> date | datetime:
        hint = "a date like 2027-03-31, or a date-time like 2027-03-31T23:00"
        if isinstance(node, ScalarNode) and node.tag == TAG + "timestamp":
            value = self.construct(node)
        else:
            text = self.text(node, hint).strip()
            try:
                parse = date.fromisoformat if len(text) == 10 else datetime.fromisoformat
                value = parse(text)
            except ValueError:
                raise BadValue(f"expected {hint}, got {_short(node)}", node) from None
        if not 1970 <= value.year <= 9998:
            raise BadValue(f"the year must be from 1970 to 9998, got {_short(node)}", node)
        return value


def end_instant(ends: date | datetime, tz: str | None) -> float:
    """The last instant a schedule may fire: the end of an `ends:` date (inclusive) in the
    schedule's zone, or the date-time itself (naive: in that zone)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz) if tz else None
    if isinstance(ends, datetime):
        if ends.tzinfo is not None:
            return ends.timestamp()
        return ends.replace(tzinfo=zone).timestamp() if zone else ends.timestamp()
    midnight = datetime.combine(ends + timedelta(days=1), time())
    stamp = midnight.replace(tzinfo=zone).timestamp() if zone else midnight.timestamp()
    return stamp - 1


def describe(rule: Rule) -> str:
    """The rule in words: "at 23:00 on Monday through Friday", "every 6h", ..."""
    if rule.kind == "cron" and rule.cron is not None:
        from cronsim import CronSim

        words = CronSim(rule.cron, datetime.now(UTC)).explain()
        return words[:1].lower() + words[1:]
    if rule.kind == "every" and rule.every is not None:
        step = units.format_duration(rule.every)
        if MAX_EVERY % rule.every == 0 and rule.every != MAX_EVERY:
            return f"every {step}, from midnight"
        if rule.every == MAX_EVERY:
            return "every day at 00:00"
        return f"every {step}, counted from midnight each day"
    times = [t.strftime("%H:%M") for t in rule.at]
    at = "at " + (", ".join(times[:-1]) + " and " + times[-1] if len(times) > 1 else times[0])
    return f"{at}, {describe_days(rule.days)}"


def describe_days(days: tuple[int, ...]) -> str:
    """`(0, 1, 2, 3, 4)` as "Monday to Friday"; () as "every day"."""
    if not days or len(days) == 7:
        return "every day"
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{DAY_WORDS[days[0]]} to {DAY_WORDS[days[-1]]}"
    names = [DAY_WORDS[d] for d in days]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def _day(text: str) -> int | None:
    word = text.strip().lower()[:3]
    return DAY_NAMES.index(word) if word in DAY_NAMES and len(text.strip()) >= 3 else None


def _valid_alone(fields: list[str]) -> bool:
    """Whether day-of-month and month are each valid on their own (so together they name
    a day no month has)."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(f"0 0 {fields[2]} * *", datetime.now(UTC))
        CronSim(f"0 0 1 {fields[3]} *", datetime.now(UTC))
    except CronSimError:
        return False
    return True


def _zone_hint(name: str) -> str:
    import difflib
    import zoneinfo

    close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (an IANA name like Europe/Istanbul)"


def _short(node: Node) -> str:
    if isinstance(node, ScalarNode):
        text = repr(node.value) if node.tag == TAG + "str" else node.value or "nothing"
        return text if len(text) <= 60 else text[:57] + "..."
    return "a list" if isinstance(node, SequenceNode) else "a mapping"
