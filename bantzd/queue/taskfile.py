"""Reads and validates a task file (SPEC section 3, and `llm:` from section 8).

A task file is untrusted text dropped into a folder, and the person who wrote it is asleep when
it is read. So: YAML is composed with the safe loader only (a tag that would build an object is
reported, never constructed), every problem in the file is reported at once with its line,
column and key path, and a misspelt key gets a suggestion. The checks work on YAML *nodes*
rather than on `safe_load`'s result, for two reasons: nodes carry the line and column, and a
plain scalar's text as written is still there, which YAML 1.1 would otherwise mangle
(`deadline: 23:30` is the integer 1410, `env: {X: 010}` is 8, `yes` is True).

Choices worth knowing (the README's task file section should say them too):

* scalars in `run`/`steps` argv lists and in `env` values are taken as written (`010`, `yes`,
  `1.10` stay text); null is rejected;
* a key given as null (`timeout:` with nothing after it) is an error, not "use the default":
  remove the key for that;
* `gpu_memory` without `gpus` means one GPU; an explicit `gpus: 0` with `gpu_memory` is an error;
* a relative `cwd` is taken from the user's home, like every other default in a task file;
* `after:` items that are integers or digit strings are task ids, anything else a name;
* every number, duration, size and date is bounded (LIMITS below, units.MAX_DURATION and
  units.MAX_SIZE): one absurd value in one file must be rejected with its key, never reach
  the supervisor's float or datetime arithmetic, where it used to stop a whole home;
* `max_retry_delay` caps the doubling of `retry_delay`; without it config.toml's cap applies,
  but never below the task's own `retry_delay`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bantzd import units
from bantzd.queue import fitfields as _fit
from bantzd.queue import taskexec
from bantzd.queue import unique as _unique
from bantzd.queue import windows as _windows
from bantzd.queue.yamlnodes import TAG as _T
from bantzd.queue.yamlnodes import Problem, TaskFileError, compose, decode

MAX_TASK_FILE_BYTES = 1024 * 1024
PRIORITY_WORDS = {"high": 10, "normal": 0, "low": -10}
WORKER_KEYS = ("run", "steps", "python", "llm", "agent")
TASK_KEYS = (
    "name", "run", "steps", "python", "args", "llm", "cwd", "env", "priority", "after",
    "retries", "retry_delay", "max_retry_delay", "timeout", "resources", "window", "not_before",
    "deadline", "approval", "category", "uses", "unique", "agent", "executor", *_fit.KEYS,
)  # fmt: skip
RESOURCE_KEYS = ("cpus", "memory", "gpus", "gpu_memory")
STEP_KEYS = ("name", "run")
LLM_KEYS = (
    "prompt", "prompt_file", "inputs", "model", "system", "max_tokens", "temperature",
    "confirm", "choices", "concurrency",
)  # fmt: skip

# Words people bring from other tools; difflib would not find these.
_TOP_ALIASES = {
    "command": "run", "cmd": "run", "script": "run", "exec": "run",
    "depends_on": "after", "depends": "after", "needs": "after", "requires": "after",
    "workdir": "cwd", "working_dir": "cwd", "dir": "cwd", "directory": "cwd",
    "environment": "env", "max_retries": "retries", "attempts": "retries",
    "cpus": "resources.cpus", "memory": "resources.memory", "gpus": "resources.gpus",
    "gpu_memory": "resources.gpu_memory", "gpu": "resources.gpus",
    "max_backoff": "max_retry_delay", "backoff_max": "max_retry_delay",
    "max_delay": "max_retry_delay", "retry_max_delay": "max_retry_delay",
    "start_after": "not_before", "start_at": "not_before", "at": "not_before",
    "function": "python", "prompt": "llm.prompt", "concurrency": "llm.concurrency",
}  # fmt: skip

_SAFE_TAGS = frozenset(
    _T + t
    for t in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map", "merge",
              "binary", "omap", "pairs", "set")
)  # fmt: skip
_TEXT_TAGS = frozenset(_T + t for t in ("str", "int", "float", "bool", "timestamp"))
_MAX_NODES = 200_000  # an alias bomb expands past this long before it hurts

# The largest value each whole-number key takes, with what it counts for the message.
# Generous for any real use; beyond them a value is a typo or an attack.
LIMITS = {
    "retries": 1000,
    "priority": 1_000_000,  # and at least -1_000_000
    "gpus": 1000,
    "uses": 1_000_000,
    "max_tokens": 100_000_000,
    "concurrency": 256,  # llm: requests in flight at once (config.MAX_LLM_CONCURRENCY)
    "after": 10**12,  # task ids
}
MAX_CPUS = 100_000
# not_before / deadline: years Python's datetime handles after any time zone shift.
MIN_YEAR, MAX_YEAR = 1970, 9998

DURATION_HINT = "a duration like 30s, 90m, 4h or 1h30m"
SIZE_HINT = "a size like 512MiB, 16GiB or 2GB"


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a `steps:` task; `run` is a shell line (str) or an argv (tuple)."""

    name: str
    run: str | tuple[str, ...]


@dataclass(frozen=True)
class Resources:
    """What a task needs to start; sizes in bytes. `gpus` is at least 1 when gpu_memory is set."""

    cpus: float | None = None
    memory: int | None = None
    gpus: int = 0
    gpu_memory: int | None = None


def _frozen() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class TaskSpec:
    """A validated task file. Durations are seconds; raw texts are kept where reasons quote them."""

    name: str
    kind: str
    run: str | tuple[str, ...] | None = None
    steps: tuple[Step, ...] = ()
    python: str | None = None
    args: Mapping[str, Any] = field(default_factory=_frozen)
    llm: Mapping[str, Any] | None = None
    agent: Mapping[str, Any] | None = None  # SPEC 12, checked by queue/agentfile.py
    cwd: str = "~"
    env: Mapping[str, str] = field(default_factory=_frozen)
    priority: int = 0
    after: tuple[str | int, ...] = ()
    retries: int = 0
    retry_delay: float = 60.0
    max_retry_delay: float | None = None
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    window: tuple[_windows.Window, ...] = ()
    window_text: tuple[str, ...] = ()
    not_before: datetime | time | None = None
    deadline: datetime | time | None = None
    approval: bool = False
    category: str | None = None
    uses: Mapping[str, int] = field(default_factory=_frozen)
    # `unique:` (SPEC 10): True (the key is a hash of the file), a key, or None (not unique).
    unique: bool | str | None = None
    # SPEC 11: how long a run takes (seconds), and whether the task resumes when stopped.
    estimate: float | None = None
    checkpoints: bool = False
    executor: str | None = None  # local | slurm; None: config.toml's [executor] kind

    def retry_cap(self, default: float) -> float:
        """The longest wait between attempts: the task's `max_retry_delay`, else `default`
        (config.toml's `max_retry_delay`) but never below the task's own `retry_delay` (the
        first wait is always what the file asked for; only the doubling is capped)."""
        if self.max_retry_delay is not None:
            return self.max_retry_delay
        return max(default, self.retry_delay)

    def expanded_cwd(self) -> str:
        """The working directory as an absolute path; a relative one is taken from home."""
        path = os.path.expanduser(self.cwd)
        if not os.path.isabs(path):
            path = os.path.join(os.path.expanduser("~"), path)
        return os.path.normpath(path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary with every key present (durations in seconds, times ISO)."""
        res = self.resources
        return {
            "name": self.name,
            "kind": self.kind,
            "run": _jsonable(self.run),
            "steps": [{"name": s.name, "run": _jsonable(s.run)} for s in self.steps],
            "python": self.python,
            "args": _jsonable(self.args),
            "llm": _jsonable(self.llm),
            "agent": _jsonable(self.agent),
            "cwd": self.cwd,
            "env": dict(self.env),
            "priority": self.priority,
            "after": list(self.after),
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "timeout": self.timeout,
            "resources": {
                "cpus": res.cpus,
                "memory": res.memory,
                "gpus": res.gpus,
                "gpu_memory": res.gpu_memory,
            },
            "window": list(self.window_text),
            "not_before": _jsonable(self.not_before),
            "deadline": _jsonable(self.deadline),
            "approval": self.approval,
            "category": self.category,
            "uses": dict(self.uses),
            "unique": self.unique,
            **_fit.to_dict(self),
            "executor": self.executor,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# --- entry point ----------------------------------------------------------------------------


def parse_task(data: bytes | str, *, default_name: str) -> TaskSpec:
    """Parse and validate a task file; `default_name` (the file's stem) is used without `name:`.

    Raises TaskFileError listing every problem found.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_TASK_FILE_BYTES:
        raise TaskFileError(
            [Problem(f"file is {units.format_size(len(raw))}; task files are limited to 1 MiB")]
        )
    spec, problems = check_task_root(compose(decode(raw)), default_name)
    if spec is None:
        raise TaskFileError(problems)
    return spec


def check_task_root(root: Node, default_name: str) -> tuple[TaskSpec | None, list[Problem]]:
    """parse_task's checks on a composed document: (the spec, []) or (None, the problems in
    file order). queue/schedulefile.py hands it the task part of a schedule file."""
    checker = _Checker()
    checker.check_nodes(root)
    if checker.problems:
        return None, checker.problems
    spec = checker.task(root, default_name)
    if checker.problems or spec is None:
        return None, sorted(checker.problems, key=problem_order)
    return spec, []


def problem_order(p: Problem) -> tuple[bool, int, int]:
    """Problems without a line first, then by line and column."""
    return (p.line is not None, p.line or 0, p.column or 0)


# --- the checker ----------------------------------------------------------------------------


class _Bad(Exception):
    """A value is wrong: recorded as a Problem at `node` (or the node being checked)."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


class _Recursive(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _show(node: Node) -> str:
    """The offending value as the user wrote it, short."""
    if isinstance(node, ScalarNode):
        if node.tag == _T + "null":
            return "nothing" if node.value == "" else node.value
        text = repr(node.value) if node.tag == _T + "str" else node.value
    else:
        try:
            value = SafeConstructor().construct_document(node)
            text = json.dumps(_jsonable(value), ensure_ascii=False)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
            # Showing the value must never hide the real problem.
            text = "a list" if isinstance(node, SequenceNode) else "a mapping"
    return text if len(text) <= 60 else text[:57] + "..."


def _huge(node: Node) -> bool:
    """A scalar with more digits than any bounded key takes: refused before int() or float()
    see it (int() refuses more than 4300 digits, with a message about sys internals)."""
    return isinstance(node, ScalarNode) and sum(c.isdigit() for c in node.value[:200]) > 100


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _check_name(name: str) -> str | None:
    if not name.strip():
        return "must not be empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must be one line, without control characters"
    if "/" in name:
        return f"{name!r} contains '/'; names cannot contain slashes"
    if name.isdigit():
        return f"{name!r} is all digits and would read as a task id; put a letter in it"
    return None


def _check_python_ref(ref: str) -> bool:
    module, sep, func = ref.partition(":")
    return bool(sep) and all(part.isidentifier() for part in (*module.split("."), *func.split(".")))


class _Checker:
    """Walks the node tree, collecting Problems; returns values or raises _Bad per key."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._flattened: set[int] = set()

    # recording ---------------------------------------------------------------------------

    def problem(self, message: str, key: str | None = None, node: Node | None = None) -> None:
        line = column = None
        if node is not None and node.start_mark is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.problems.append(Problem(message, key or None, line, column))

    def each(self, path: str, node: Node, check: Callable[[Node, str], Any]) -> Any:
        """Run one check; a _Bad becomes a Problem and the result None."""
        try:
            return check(node, path)
        except _Bad as e:
            self.problem(e.message, path, e.node or node)
            return None

    # whole-tree checks -------------------------------------------------------------------

    def check_nodes(self, root: Node) -> None:
        """Refuse object-building tags, recursive aliases and alias bombs before anything else."""
        sizes: dict[int, int] = {}

        def walk(node: Node) -> int:
            known = sizes.get(id(node))
            if known is not None:
                if known < 0:
                    raise _Recursive(node)
                return known
            sizes[id(node)] = -1
            if node.tag not in _SAFE_TAGS:
                short = "!!" + node.tag[len(_T) :] if node.tag.startswith(_T) else node.tag
                self.problem(
                    f"YAML tag {short} is not allowed: a task file is plain data, and tags "
                    "that build objects are never run",
                    node=node,
                )
            if isinstance(node, ScalarNode) and _has_surrogate(node.value):
                # "\ud800" in double quotes (the pure-Python loader allows it) is no text:
                # it cannot be written to state.json or the journal.
                self.problem("contains a lone UTF-16 surrogate escape; not text", node=node)
            total = 1
            if isinstance(node, SequenceNode):
                total += sum(walk(child) for child in node.value)
            elif isinstance(node, MappingNode):
                total += sum(walk(k) + walk(v) for k, v in node.value)
            sizes[id(node)] = total
            return total

        try:
            total = walk(root)
        except _Recursive as e:
            self.problem("an alias refers to a value that contains it; not allowed", node=e.node)
            return
        except RecursionError:
            self.problem("the YAML is nested too deeply")
            return
        if total > _MAX_NODES:
            self.problem(f"aliases expand this file to more than {_MAX_NODES} values")

    # scalars -----------------------------------------------------------------------------

    def construct(self, node: Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as e:
            why = "a number of more than 4300 digits" if "int_max_str_digits" in str(e) else e
            raise _Bad(f"{_show(node)} is not a valid value: {why}", node) from None

    def text(self, node: Node, what: str = "text", *, empty_ok: bool = False) -> str:
        """The scalar as written. Numbers, booleans and dates are text too, in their own words."""
        if not isinstance(node, ScalarNode) or node.tag not in _TEXT_TAGS:
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        if not empty_ok and not node.value.strip():
            raise _Bad(f"expected {what}, got an empty text", node)
        if "\x00" in node.value:
            raise _Bad("contains a NUL character", node)
        return node.value

    def integer(self, node: Node, what: str, minimum: int, maximum: int) -> int:
        if _huge(node):
            raise _Bad(f"too large: at most {maximum}, got {_show(node)}", node)
        value = self.construct(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        if value > maximum:
            raise _Bad(f"too large: at most {maximum}, got {_show(node)}", node)
        return value

    def number(self, node: Node, what: str, low: float, high: float) -> float:
        """A number from `low` to `high` (so never inf or NaN); -0.0 comes back as 0.0."""
        if _huge(node):
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        value = self.construct(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        if not low <= value <= high:  # compared before float(): 10**400 overflows it
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        return float(value) + 0.0

    def _unit_input(self, node: Node) -> str | int | float:
        # Sexagesimal ints (1:30) and octal-looking ints are YAML 1.1 surprises: use the text.
        if isinstance(node, ScalarNode) and node.tag in (_T + "int", _T + "float"):
            if ":" not in node.value and not node.value.lstrip("+-").startswith("0"):
                return self.construct(node)
            if node.value.strip("+-0.") == "":  # 0, -0, 0.0, -0.0, 00: zero as written
                return 0
        return self.text(node, "a value")

    def duration(self, node: Node, *, positive: bool = False) -> float:
        if not isinstance(node, ScalarNode) or node.tag == _T + "null":
            raise _Bad(f"expected {DURATION_HINT}, got {_show(node)}", node)
        try:
            seconds = units.parse_duration(self._unit_input(node))
        except units.TooLong:
            seconds = float("inf")
        except ValueError:
            raise _Bad(f"expected {DURATION_HINT}, got {_show(node)}", node) from None
        if positive and seconds <= 0:
            raise _Bad(f"must be more than zero, got {_show(node)}", node)
        if seconds > units.MAX_DURATION:
            raise _Bad(f"too long: at most {units.MAX_DURATION_TEXT}, got {_show(node)}", node)
        return seconds

    def size(self, node: Node) -> int:
        if not isinstance(node, ScalarNode) or node.tag == _T + "null":
            raise _Bad(f"expected {SIZE_HINT}, got {_show(node)}", node)
        try:
            n = units.parse_size(self._unit_input(node))
        except ValueError:
            raise _Bad(f"expected {SIZE_HINT}, got {_show(node)}", node) from None
        if n <= 0:
            raise _Bad(f"must be more than zero, got {_show(node)}", node)
        if n > units.MAX_SIZE:
            raise _Bad(f"too large: at most {units.MAX_SIZE_TEXT}, got {_show(node)}", node)
        return n

    def when(self, node: Node) -> datetime | time:
        hint = "a time like 01:00 or 2026-11-22T01:00"
        if isinstance(node, ScalarNode) and node.tag == _T + "timestamp":
            value = self.construct(node)
            when = value if isinstance(value, datetime) else datetime.combine(value, time())
        else:
            try:
                when = units.parse_when(self.text(node, hint))
            except ValueError:
                raise _Bad(f"expected {hint}, got {_show(node)}", node) from None
        if isinstance(when, datetime) and not MIN_YEAR <= when.year <= MAX_YEAR:
            raise _Bad(f"the year must be from {MIN_YEAR} to {MAX_YEAR}, got {_show(node)}", node)
        return when

    # collections -------------------------------------------------------------------------

    def items(
        self,
        node: Node,
        path: str,
        allowed: tuple[str, ...] | None,
        aliases: Mapping[str, str] | None = None,
    ) -> dict[str, tuple[Node, Node]]:
        """A mapping's entries by key text, reporting duplicate, non-text and unknown keys."""
        if not isinstance(node, MappingNode):
            raise _Bad(f"expected a mapping of keys, got {_show(node)}", node)
        first_visit = id(node) not in self._flattened
        self._flattened.add(id(node))
        seen: dict[str, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _T + "merge" or not isinstance(key_node, ScalarNode):
                continue
            if first_visit and key_node.value in seen:
                first = seen[key_node.value].start_mark.line + 1
                self.problem(
                    f"given twice (first on line {first})", _join(path, key_node.value), key_node
                )
            seen.setdefault(key_node.value, key_node)
        try:
            self._constructor.flatten_mapping(node)  # resolves `<<: *defaults` merge keys
        except yaml.YAMLError as e:
            raise _Bad(f"cannot merge: {getattr(e, 'problem', e)}", node) from None
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _TEXT_TAGS:
                if first_visit:
                    self.problem("keys must be plain text", path or None, key_node)
                continue
            key = key_node.value
            if allowed is not None and key not in allowed:
                if first_visit:
                    self.problem(
                        f"unknown key{_suggest(key, allowed, aliases)}", _join(path, key), key_node
                    )
                continue
            out.pop(key, None)  # keep document order of the last occurrence
            out[key] = (key_node, value_node)
        return out

    def text_list(self, node: Node, path: str, what: str) -> tuple[str, ...]:
        """One text or a non-empty list of texts."""
        if isinstance(node, SequenceNode):
            if not node.value:
                raise _Bad(f"expected {what} or a list of them, got an empty list", node)
            return tuple(self.text(item, what) for item in node.value)
        return (self.text(node, f"{what} or a list of them"),)

    def command(self, node: Node, path: str) -> str | tuple[str, ...]:
        """A shell line (str) or an argv (tuple); argv scalars are taken as written."""
        if isinstance(node, SequenceNode):
            if not node.value:
                raise _Bad("expected a command line or a list of arguments, got []", node)
            argv = []
            for i, item in enumerate(node.value):
                if not isinstance(item, ScalarNode) or item.tag not in _TEXT_TAGS:
                    raise _Bad(
                        f"argument {i + 1}: expected text, got {_show(item)} (quote it)", item
                    )
                argv.append(self.text(item, "text", empty_ok=i > 0))
            return tuple(argv)
        return self.text(node, "a command line or a list of arguments")

    # the task ----------------------------------------------------------------------------

    def task(self, root: Node, default_name: str) -> TaskSpec | None:
        if not isinstance(root, MappingNode):
            kind = "a list" if isinstance(root, SequenceNode) else f"the value {_show(root)}"
            self.problem(f"a task file must be a mapping of keys, got {kind}", node=root)
            return None
        try:
            entries = self.items(root, "", TASK_KEYS, _TOP_ALIASES)
        except _Bad as e:  # a bad merge key at the top level
            self.problem(e.message, node=e.node)
            return None
        values: dict[str, Any] = {}
        for key, (_, value_node) in entries.items():
            check = getattr(self, "_" + key)
            values[key] = self.each(key, value_node, check)

        workers = [k for k in entries if k in WORKER_KEYS]
        if not workers:
            self.problem("missing what to do: give one of run, steps, python, llm, agent")
        elif len(workers) > 1:
            names = ", ".join(workers[:-1]) + " and " + workers[-1]
            self.problem(
                f"{names} each say what to do; give only one of run, steps, python, llm, agent",
                node=entries[workers[1]][0],
            )
        cap, first = values.get("max_retry_delay"), values.get("retry_delay", 60.0)
        if cap is not None and first is not None and cap < first:
            self.problem(
                f"{units.format_duration(cap)} is less than retry_delay "
                f"{units.format_duration(first)}; the longest wait cannot be below the first",
                "max_retry_delay",
                entries["max_retry_delay"][1],
            )
        if "args" in entries and "python" not in entries:
            self.problem("only python tasks take args", "args", entries["args"][0])

        name = values.get("name")
        if "name" not in entries:
            name = default_name
            why = _check_name(default_name)
            if why is not None:
                self.problem(
                    f"there is no name: key, and the file name cannot be the task's name: {why}"
                )
        if self.problems:
            return None

        kwargs = {k: v for k, v in values.items() if k not in ("name", "resources", "window")}
        if "window" in values:
            kwargs["window"] = tuple(w for _, w in values["window"])
            kwargs["window_text"] = tuple(t for t, _ in values["window"])
        if "resources" in values:
            kwargs["resources"] = values["resources"]
        return TaskSpec(name=name, kind=workers[0], **kwargs)

    # one method per key: `_KEY(node, path)`; raise _Bad or record problems for nested keys.

    def _name(self, node: Node, path: str) -> str:
        name = self.text(node, "a name")
        why = _check_name(name)
        if why is not None:
            raise _Bad(why, node)
        return name

    def _step_name(self, node: Node, path: str) -> str:
        # Unlike a task name, a step name is never confused with an id: "1" is fine.
        name = self.text(node, "a step name")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise _Bad("must be one line, without control characters", node)
        return name

    def _run(self, node: Node, path: str) -> str | tuple[str, ...]:
        return self.command(node, path)

    def _steps(self, node: Node, path: str) -> tuple[Step, ...]:
        if not isinstance(node, SequenceNode) or not node.value:
            raise _Bad(f"expected a list of {{name, run}} steps, got {_show(node)}", node)
        steps: list[Step] = []
        names: dict[str, int] = {}
        for i, item in enumerate(node.value, start=1):
            where = _join(path, i)
            try:
                entries = self.items(item, where, STEP_KEYS)
            except _Bad as e:
                self.problem(
                    f"expected a mapping with name and run, got {_show(item)}", where, e.node
                )
                continue
            name = f"step-{i}"
            if "name" in entries:
                name = self.each(_join(where, "name"), entries["name"][1], self._step_name) or name
            if "run" not in entries:
                self.problem("missing run: the command of this step", where, item)
                continue
            run = self.each(_join(where, "run"), entries["run"][1], self.command)
            if name in names:
                self.problem(
                    f"step name {name!r} is used twice (also step {names[name]})",
                    _join(where, "name"),
                    entries["name"][1] if "name" in entries else item,
                )
            names.setdefault(name, i)
            if run is not None:
                steps.append(Step(name, run))
        return tuple(steps)

    def _python(self, node: Node, path: str) -> str:
        ref = self.text(node, '"package.module:function"').strip()
        if not _check_python_ref(ref):
            raise _Bad(f'expected "package.module:function", got {_show(node)}', node)
        return ref

    def _args(self, node: Node, path: str) -> Mapping[str, Any]:
        entries = self.items(node, path, None)
        return MappingProxyType({k: self.construct(v) for k, (_, v) in entries.items()})

    def _llm(self, node: Node, path: str) -> Mapping[str, Any]:
        entries = self.items(node, path, LLM_KEYS)
        out: dict[str, Any] = {}
        checks: dict[str, Callable[[Node, str], Any]] = {
            "prompt": lambda n, p: self.text(n, "the prompt text"),
            "prompt_file": lambda n, p: self.text(n, "a file path"),
            "inputs": lambda n, p: self.text_list(n, p, "a file path or glob"),
            "model": lambda n, p: self.text(n, "a model name"),
            "system": lambda n, p: self.text(n, "the system prompt", empty_ok=True),
            "max_tokens": lambda n, p: self.integer(
                n, "a whole number > 0", 1, LIMITS["max_tokens"]
            ),
            "temperature": self._temperature,
            "concurrency": lambda n, p: self.integer(
                n,
                f"a whole number from 1 to {LIMITS['concurrency']} (requests at once)",
                1,
                LIMITS["concurrency"],
            ),
            "confirm": lambda n, p: self.text(n, "the question to confirm"),
            "choices": lambda n, p: self.text_list(n, p, "a choice"),
        }
        for key, (_, value_node) in entries.items():
            value = self.each(_join(path, key), value_node, checks[key])
            if value is not None:
                out[key] = value
        if "prompt" in entries and "prompt_file" in entries:
            self.problem("give prompt or prompt_file, not both", path, entries["prompt_file"][0])
        elif "prompt" not in entries and "prompt_file" not in entries:
            self.problem("missing the prompt: give prompt or prompt_file", path, node)
        if "choices" in entries and "confirm" not in entries:
            self.problem("only used with confirm", _join(path, "choices"), entries["choices"][0])
        return MappingProxyType(out)

    def _agent(self, node: Node, path: str) -> Mapping[str, Any]:
        from bantzd.queue.agentfile import check_agent  # it builds on this module

        return check_agent(self, node, path)

    def _temperature(self, node: Node, path: str) -> float:
        return self.number(node, "a number from 0 to 2", 0, 2)

    def _cwd(self, node: Node, path: str) -> str:
        if isinstance(node, ScalarNode) and node.tag == _T + "null" and node.value == "~":
            return "~"  # `cwd: ~` means home, though YAML reads a lone ~ as null
        return self.text(node, "a folder path")

    def _env(self, node: Node, path: str) -> Mapping[str, str]:
        entries = self.items(node, path, None)
        env: dict[str, str] = {}
        for key, (key_node, value_node) in entries.items():
            if "=" in key or "\x00" in key or not key.strip():
                self.problem("not a valid variable name", _join(path, key), key_node)
                continue
            value = self.each(
                _join(path, key),
                value_node,
                lambda n, p: self.text(n, 'a value (write "" for empty)', empty_ok=True),
            )
            if value is not None:
                env[key] = value
        return MappingProxyType(env)

    def _priority(self, node: Node, path: str) -> int:
        bound = LIMITS["priority"]
        if _huge(node):
            raise _Bad(f"must be from -{bound} to {bound}, got {_show(node)}", node)
        value = self.construct(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, str):
            word = value.strip().lower()
            if word in PRIORITY_WORDS:
                return PRIORITY_WORDS[word]
            try:
                value = int(word)
            except ValueError:  # also a text of more than 4300 digits
                value = None
        if isinstance(value, int) and not isinstance(value, bool):
            if not -bound <= value <= bound:
                raise _Bad(f"must be from -{bound} to {bound}, got {_show(node)}", node)
            return value
        raise _Bad(f"expected high, normal, low or a whole number, got {_show(node)}", node)

    def _after(self, node: Node, path: str) -> tuple[str | int, ...]:
        items = node.value if isinstance(node, SequenceNode) else [node]
        refs: list[str | int] = []
        for item in items:
            what = "a task name or id"
            if isinstance(item, ScalarNode) and item.tag in (_T + "int", _T + "str"):
                text = item.value.strip()
                if text.isdigit() and len(text.lstrip("0")) > 13:  # before int(): 4300+ digits
                    raise _Bad(f"task ids go up to {LIMITS['after']}, got {_show(item)}", item)
                ref: str | int = int(text) if text.isdigit() else text
                if isinstance(ref, int) and ref < 1:
                    raise _Bad(f"task ids start at 1, got {_show(item)}", item)
                if isinstance(ref, int) and ref > LIMITS["after"]:
                    raise _Bad(f"task ids go up to {LIMITS['after']}, got {_show(item)}", item)
                if ref == "" or (item.tag == _T + "int" and not isinstance(ref, int)):
                    raise _Bad(f"expected {what}, got {_show(item)}", item)
            else:
                raise _Bad(f"expected {what} or a list of them, got {_show(item)}", item)
            if ref not in refs:
                refs.append(ref)
        return tuple(refs)

    def _retries(self, node: Node, path: str) -> int:
        return self.integer(node, "a whole number >= 0", 0, LIMITS["retries"])

    def _retry_delay(self, node: Node, path: str) -> float:
        return self.duration(node)

    def _max_retry_delay(self, node: Node, path: str) -> float:
        return self.duration(node)

    def _timeout(self, node: Node, path: str) -> float:
        return self.duration(node, positive=True)

    def _resources(self, node: Node, path: str) -> Resources:
        entries = self.items(node, path, RESOURCE_KEYS)
        checks: dict[str, Callable[[Node, str], Any]] = {
            "cpus": self._cpus,
            "memory": lambda n, p: self.size(n),
            "gpus": lambda n, p: self.integer(n, "a whole number >= 0", 0, LIMITS["gpus"]),
            "gpu_memory": lambda n, p: self.size(n),
        }
        got = {k: self.each(_join(path, k), v, checks[k]) for k, (_, v) in entries.items()}
        gpus = got.get("gpus")
        if got.get("gpu_memory") is not None and gpus is None and "gpus" not in entries:
            gpus = 1
        elif got.get("gpu_memory") is not None and gpus == 0:
            self.problem(
                "gpu_memory needs gpus > 0 (leave gpus out for one GPU)",
                _join(path, "gpus"),
                entries["gpus"][1],
            )
        return Resources(
            cpus=got.get("cpus"),
            memory=got.get("memory"),
            gpus=gpus or 0,
            gpu_memory=got.get("gpu_memory"),
        )

    def _cpus(self, node: Node, path: str) -> float:
        what = f"a number of CPUs > 0, at most {MAX_CPUS}"
        value = self.number(node, what, 0, MAX_CPUS)
        if value <= 0:
            raise _Bad(f"expected {what}, got {_show(node)}", node)
        return value

    def _window(self, node: Node, path: str) -> tuple[tuple[str, _windows.Window], ...]:
        texts = self.text_list(node, path, _windows.WINDOW_HINT)
        nodes = node.value if isinstance(node, SequenceNode) else [node]
        out = []
        for text, item in zip(texts, nodes, strict=True):
            try:
                out.append((text.strip(), _windows.parse_window(text)))
            except ValueError as e:
                raise _Bad(str(e), item) from None
        return tuple(out)

    def _not_before(self, node: Node, path: str) -> datetime | time:
        return self.when(node)

    def _deadline(self, node: Node, path: str) -> datetime | time:
        return self.when(node)

    def _approval(self, node: Node, path: str) -> bool:
        value = self.construct(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            raise _Bad(f"expected true or false, got {_show(node)}", node)
        return value

    def _unique(self, node: Node, path: str) -> bool | str | None:
        value = self.construct(node) if isinstance(node, ScalarNode) else None
        if isinstance(value, bool):
            return True if value else None
        try:
            return _unique.parse_key(self.text(node, _unique.HINT))
        except ValueError as e:
            raise _Bad(str(e), node) from None

    def _estimate(self, node: Node, path: str) -> float:
        return _fit.estimate(self, node)

    def _checkpoints(self, node: Node, path: str) -> bool:
        return self._approval(node, path)

    def _category(self, node: Node, path: str) -> str:
        return self.text(node, "a category name")

    def _uses(self, node: Node, path: str) -> Mapping[str, int]:
        entries = self.items(node, path, None)
        uses = {}
        for key, (_, value_node) in entries.items():
            n = self.each(
                _join(path, key),
                value_node,
                lambda n, p: self.integer(n, "a whole number > 0", 1, LIMITS["uses"]),
            )
            if n is not None:
                uses[key] = n
        return MappingProxyType(uses)

    def _executor(self, node: Node, path: str) -> str:
        try:
            return taskexec.check(self.text(node, "local or slurm"))
        except ValueError as e:
            raise _Bad(str(e), node) from None


# The per-value checks (text, durations, mappings with misspelt-key suggestions), for the
# schedule part of a schedule file (queue/schedulefile.py).
NodeChecker = _Checker
BadValue = _Bad


def _suggest(key: str, allowed: tuple[str, ...], aliases: Mapping[str, str] | None) -> str:
    lowered = key.lower().replace("-", "_")
    if lowered in allowed:
        return f" (did you mean {lowered!r}?)"
    if aliases and lowered in aliases:
        return f" (did you mean {aliases[lowered]!r}?)"
    import difflib  # only on the error path: it costs ~10 ms to import

    close = difflib.get_close_matches(lowered, allowed, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
