"""config.toml: defaults, loading with precise errors, and the file `bantzd init` writes.

The file is optional and partial: whatever it sets is merged over DEFAULTS, so a user writes only
what they change. Every problem is reported at once, each naming its key, because a supervisor
that refuses to start at 23:00 over one typo at a time costs a night per typo.

Durations and sizes take the same forms as task files (`30s`, `2GiB`) or plain numbers.
Defaults not shown in SPEC section 7: `max_interruptions = 5` (a task stopped, not failed, more
often than this fails), `max_retry_delay = "1h"` (the doubling of a task's `retry_delay` stops
there; a task may set its own), `probe_interval = "5s"`, `scan_interval = "2s"` (periodic spool
rescan), `max_queued = 10000` (SPEC 10: past that many unfinished tasks spool files wait),
`report_language = "en"`, no `[limits]`, and `[approval] categories = []` (nothing is
held by category unless configured).

Every number is bounded (durations by units.MAX_DURATION, sizes by units.MAX_SIZE, counts by
the maxima below), so no setting can overflow the supervisor's float or datetime arithmetic.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bantzd import units
from bantzd.configvalues import (
    _bool,
    _did_you_mean,
    _duration,
    _fetch_allow,
    _int,
    _number,
    _or,
    _short,
    _size,
    _text,
    _texts,
    _url,
)
from bantzd.errors import ConfigError

NOTIFY_EVENTS = ("report", "question", "failed")
# `max_retry_delay`'s default, "1h": also the cap of `backoff` and `Policy` when none is given.
DEFAULT_MAX_RETRY_DELAY = 3600.0
# Upper bounds for whole numbers; generous, they only keep typos and attacks out.
MAX_PARALLEL = 10_000
MAX_QUEUED = 100_000_000  # `max_queued`: unfinished tasks before spool files wait
MAX_COUNT = 1000
MAX_CONTEXT_CHARS = 100_000_000
# Requests one `llm:` task has in flight at once (one thread each): a real server has a few
# dozen slots at most; more threads than that only queue at its door.
MAX_LLM_CONCURRENCY = 256
MAX_LIMIT = 1_000_000_000
LIMIT_KEYS = ("per_minute", "per_hour", "concurrent")

DEFAULTS: dict[str, Any] = {
    "max_parallel": 2,
    "stop_grace": "30s",
    "nice": 10,
    "max_interruptions": 5,
    "max_retry_delay": units.format_duration(DEFAULT_MAX_RETRY_DELAY),  # "1h"
    "probe_interval": "5s",
    "scan_interval": "2s",
    "max_queued": 10_000,
    "report_language": "en",
    "fit_night": True,
    "throttle": {
        "max_load": 1.5,
        "min_free_memory": "2GiB",
        "gpu_max_util": 30,
        "gpu_min_free_memory": "4GiB",
    },
    "limits": {},
    "approval": {"categories": []},
    "llm": {
        "base_url": "http://127.0.0.1:8080/v1",
        "model": "local",
        "fallback_models": [],
        "api_key_env": "OPENAI_API_KEY",
        "context_chars": 12000,
        "timeout": "120s",
        "concurrency": 4,
    },
    "notify": {"urls": [], "on": ["report", "question", "failed"]},
    "hooks": {"on_finish": "", "timeout": "1m"},
    "agent": {"fetch_allow": [], "fetch_timeout": "30s", "fetch_max_bytes": "2MiB"},
    "executor": {
        "kind": "local",
        "slurm": {"partition": "", "max_submitted": 50, "sbatch_args": [], "poll_interval": "5s"},
    },
}
EXECUTOR_KINDS = ("local", "slurm")


@dataclass(frozen=True)
class Throttle:
    """A new task starts only while all of these hold; sizes in bytes, util in percent."""

    max_load: float
    min_free_memory: int
    gpu_max_util: float
    gpu_min_free_memory: int


@dataclass(frozen=True)
class Limit:
    """A named rate limit (`[limits.NAME]`) that tasks take units from with `uses:`."""

    name: str
    per_minute: int | None
    per_hour: int | None
    concurrent: int | None


@dataclass(frozen=True)
class LlmConfig:
    """The OpenAI-compatible endpoint `llm:` tasks talk to; the key is read from api_key_env."""

    base_url: str
    model: str
    fallback_models: tuple[str, ...]
    api_key_env: str
    context_chars: int = 12000
    timeout: float = 120.0
    # Requests an `llm:` task sends at once (its `concurrency:` overrides it), at most the
    # units its `uses:` holds of a limit with `concurrent`.
    concurrency: int = 4


@dataclass(frozen=True)
class NotifyConfig:
    """Apprise URLs and the events (NOTIFY_EVENTS) that are sent to them."""

    urls: tuple[str, ...]
    on: tuple[str, ...]


@dataclass(frozen=True)
class HooksConfig:
    """Shell commands the supervisor runs on events (`[hooks]`); "" runs nothing.

    `on_finish` runs through `sh -c` when a task ends (done, failed, cancelled), like
    task-spooler's TS_ONFINISH, with the task in its environment (supervisor/hooks.py);
    a hook still running after `timeout` is killed."""

    on_finish: str = ""
    timeout: float = 60.0


@dataclass(frozen=True)
class AgentConfig:
    """`[agent]`: what the fetch tool of `agent:` tasks may reach, and its caps.

    `fetch_allow` lists host names and networks (CIDRs) let through the check that refuses
    loopback, private and link-local addresses (bantzd.workers.agentfetch)."""

    fetch_allow: tuple[str, ...] = ()
    fetch_timeout: float = 30.0
    fetch_max_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True)
class SlurmConfig:
    """`[executor.slurm]`: how tasks run as Slurm jobs (SPEC section 13)."""

    partition: str = ""  # empty: the cluster's default
    max_submitted: int = 50  # this home's jobs in Slurm at once, pending + running
    sbatch_args: tuple[str, ...] = ()
    poll_interval: float = 5.0


@dataclass(frozen=True)
class ExecutorConfig:
    """`[executor]`: where tasks run unless their `executor:` says otherwise."""

    kind: str = "local"
    slurm: SlurmConfig = SlurmConfig()


@dataclass(frozen=True)
class Config:
    """The validated settings; durations in seconds, sizes in bytes."""

    max_parallel: int
    stop_grace: float
    nice: int
    max_interruptions: int
    probe_interval: float
    scan_interval: float
    report_language: str
    throttle: Throttle
    limits: Mapping[str, Limit]
    approval_categories: tuple[str, ...]
    llm: LlmConfig
    notify: NotifyConfig
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    hooks: HooksConfig = HooksConfig()
    max_queued: int = 10_000
    agent: AgentConfig = AgentConfig()
    # SPEC 11: hold back what would not finish, stop resumable tasks stop_grace early
    fit_night: bool = True
    executor: ExecutorConfig = ExecutorConfig()


# --- loading --------------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Read config.toml at `path`; a missing file means every default."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return config_from_mapping({})
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start}"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        from bantzd.configwords import show_line, toml_problem  # the error path only

        line, words = toml_problem(text, e)
        at = f" line {line}" if line else ""
        raise ConfigError(f"{path}{at}: not valid TOML: {words}{show_line(text, line)}") from None
    return _build(data, str(path), text)


def config_from_mapping(data: Mapping[str, Any]) -> Config:
    """Validate a parsed config (merged over DEFAULTS); errors are prefixed `config.toml:`."""
    return _build(data, "config.toml")


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.keys: list[str] = []  # the key of each line, to find it in the file

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")
        self.keys.append(path)

    def report(self, source: str, text: str | None) -> str:
        """One line per problem, `SOURCE line N: KEY: what` when the file's text shows
        where KEY is set (as `bantzd run` and every other command print it)."""
        if text is None:
            return "\n".join(f"{source}: {line}" for line in self.lines)
        from bantzd.configwords import key_line  # the error path only

        out = []
        for key, line in zip(self.keys, self.lines, strict=True):
            n = key_line(text, key)
            out.append(f"{source} line {n}: {line}" if n else f"{source}: {line}")
        return "\n".join(out)

    def value(self, path: str, value: Any, check: Callable[[Any], Any]) -> Any:
        """`check(value)`, or None after recording its ValueError under `path`."""
        try:
            return check(value)
        except ValueError as e:
            self.add(path, str(e))
            return None

    def known(self, table: Mapping[str, Any], prefix: str, allowed: Any) -> None:
        for key in table:
            if key not in allowed:
                self.add(prefix + key, f"unknown setting{_did_you_mean(key, allowed)}")


def _build(data: Mapping[str, Any], source: str, text: str | None = None) -> Config:
    problems = _Problems()
    merged = copy.deepcopy(DEFAULTS)
    problems.known(data, "", DEFAULTS)
    for key, value in data.items():
        if key not in DEFAULTS:
            continue
        if isinstance(DEFAULTS[key], dict) and key not in ("limits", "executor"):
            if not isinstance(value, dict):
                problems.add(key, f"expected a table [{key}], got {value!r}")
                continue
            problems.known(value, f"{key}.", DEFAULTS[key])
            merged[key].update({k: v for k, v in value.items() if k in DEFAULTS[key]})
        else:
            merged[key] = value

    v = problems.value
    top = {
        "max_parallel": v("max_parallel", merged["max_parallel"], _int(1, cap=MAX_PARALLEL)),
        "stop_grace": v("stop_grace", merged["stop_grace"], _duration(zero_ok=True)),
        "nice": v("nice", merged["nice"], _int(-20, 19)),
        "max_interruptions": v(
            "max_interruptions", merged["max_interruptions"], _int(0, cap=MAX_COUNT)
        ),
        "max_retry_delay": v("max_retry_delay", merged["max_retry_delay"], _duration(zero_ok=True)),
        "probe_interval": v("probe_interval", merged["probe_interval"], _duration()),
        "scan_interval": v("scan_interval", merged["scan_interval"], _duration()),
        "max_queued": v("max_queued", merged["max_queued"], _int(1, cap=MAX_QUEUED)),
        "report_language": v("report_language", merged["report_language"], _text()),
        "fit_night": v("fit_night", merged["fit_night"], _bool),
    }
    t = merged["throttle"]
    throttle = Throttle(
        max_load=v("throttle.max_load", t["max_load"], _number(above=0)),
        min_free_memory=v("throttle.min_free_memory", t["min_free_memory"], _size),
        gpu_max_util=v("throttle.gpu_max_util", t["gpu_max_util"], _number(0, 100)),
        gpu_min_free_memory=v("throttle.gpu_min_free_memory", t["gpu_min_free_memory"], _size),
    )
    limits = _limits(merged["limits"], problems)
    categories = v("approval.categories", merged["approval"]["categories"], _texts)
    m = merged["llm"]
    llm = LlmConfig(
        base_url=v("llm.base_url", m["base_url"], _url),
        model=v("llm.model", m["model"], _text()),
        fallback_models=v("llm.fallback_models", m["fallback_models"], _texts),
        api_key_env=v("llm.api_key_env", m["api_key_env"], _text(empty_ok=True)),
        context_chars=v("llm.context_chars", m["context_chars"], _int(1, cap=MAX_CONTEXT_CHARS)),
        timeout=v("llm.timeout", m["timeout"], _duration()),
        concurrency=v("llm.concurrency", m["concurrency"], _int(1, MAX_LLM_CONCURRENCY)),
    )
    n = merged["notify"]
    notify = NotifyConfig(
        urls=v("notify.urls", n["urls"], _texts),
        on=v("notify.on", n["on"], _events),
    )
    h = merged["hooks"]
    hooks = HooksConfig(
        on_finish=v("hooks.on_finish", h["on_finish"], _text(empty_ok=True)),
        timeout=v("hooks.timeout", h["timeout"], _duration()),
    )
    a = merged["agent"]
    agent = AgentConfig(
        fetch_allow=v("agent.fetch_allow", a["fetch_allow"], _fetch_allow),
        fetch_timeout=v("agent.fetch_timeout", a["fetch_timeout"], _duration()),
        fetch_max_bytes=v("agent.fetch_max_bytes", a["fetch_max_bytes"], _size),
    )
    executor = _executor(merged["executor"], problems)
    if problems.lines:
        raise ConfigError(problems.report(source, text))
    return Config(
        **top,
        throttle=throttle,
        limits=limits,
        approval_categories=categories,
        llm=llm,
        notify=notify,
        hooks=hooks,
        agent=agent,
        executor=executor,
    )


def _executor(value: Any, problems: _Problems) -> ExecutorConfig:
    """`[executor]` and its `[executor.slurm]` table, each merged over its defaults."""
    defaults = DEFAULTS["executor"]
    if not isinstance(value, dict):
        problems.add("executor", f"expected a table [executor], got {value!r}")
        return ExecutorConfig()
    problems.known(value, "executor.", defaults)
    slurm = {**defaults["slurm"]}
    given = value.get("slurm", {})
    if isinstance(given, dict):
        problems.known(given, "executor.slurm.", defaults["slurm"])
        slurm.update({k: v for k, v in given.items() if k in defaults["slurm"]})
    else:
        problems.add("executor.slurm", f"expected a table [executor.slurm], got {given!r}")

    def kind(word: Any) -> str:
        if word not in EXECUTOR_KINDS:
            hint = _did_you_mean(word, EXECUTOR_KINDS) if isinstance(word, str) else ""
            raise ValueError(f"expected {_or(EXECUTOR_KINDS)}, got {_short(word)}{hint}")
        return str(word)

    def sbatch_args(args: Any) -> tuple[str, ...]:
        words = _texts(args)
        for word in words:
            if not word.startswith("-"):
                raise ValueError(
                    f"each argument is an sbatch option like --qos=night, got {word!r}"
                )
        return words

    v = problems.value
    return ExecutorConfig(
        kind=v("executor.kind", value.get("kind", defaults["kind"]), kind) or "local",
        slurm=SlurmConfig(
            partition=v("executor.slurm.partition", slurm["partition"], _text(empty_ok=True)),
            max_submitted=v(
                "executor.slurm.max_submitted", slurm["max_submitted"], _int(1, cap=MAX_PARALLEL)
            ),
            sbatch_args=v("executor.slurm.sbatch_args", slurm["sbatch_args"], sbatch_args),
            poll_interval=v("executor.slurm.poll_interval", slurm["poll_interval"], _duration()),
        ),
    )


def _limits(value: Any, problems: _Problems) -> Mapping[str, Limit]:
    if not isinstance(value, dict):
        problems.add("limits", f"expected tables like [limits.llm], got {value!r}")
        return MappingProxyType({})
    limits: dict[str, Limit] = {}
    for name, table in value.items():
        path = f"limits.{name}"
        if not isinstance(table, dict):
            problems.add(path, f"expected a table [{path}] with {_or(LIMIT_KEYS)}, got {table!r}")
            continue
        problems.known(table, path + ".", LIMIT_KEYS)
        if not any(k in table for k in LIMIT_KEYS):
            problems.add(path, f"give at least one of {_or(LIMIT_KEYS)}")
            continue
        got = {
            k: problems.value(f"{path}.{k}", table[k], _int(1, cap=MAX_LIMIT))
            if k in table
            else None
            for k in LIMIT_KEYS
        }
        limits[name] = Limit(name=name, **got)
    return MappingProxyType(limits)


def _events(value: Any) -> tuple[str, ...]:
    events = _texts(value)
    for event in events:
        if event not in NOTIFY_EVENTS:
            hint = _did_you_mean(event, NOTIFY_EVENTS)
            raise ValueError(f"unknown event {event!r}{hint}; events are {_or(NOTIFY_EVENTS)}")
    return events


# --- writing --------------------------------------------------------------------------------

_HEADER = """\
# bantzd settings. Every setting is shown at its default; change what you need.
# Durations: 30s, 5m, 1h30m. Sizes: 512MiB, 2GiB, 2GB. See the README for the details.

"""

_COMMENTS = {
    ("", "max_parallel"): "tasks running at once",
    ("", "stop_grace"): "SIGTERM -> SIGKILL for a stopping task",
    ("", "nice"): "workers run at this niceness",
    ("", "max_interruptions"): "a task stopped (not failed) more often than this fails",
    ("", "max_retry_delay"): "retry_delay doubles after each failure, up to this",
    ("", "probe_interval"): "how often CPU, memory and GPU load are measured",
    ("", "scan_interval"): "how often the spool is rescanned",
    ("", "max_queued"): "past this many unfinished tasks, spool files wait",
    ("", "report_language"): "language of the morning report",
    ("", "fit_night"): "hold back what would not finish; stop resumable tasks stop_grace early",
    ("throttle", None): "a new task starts only while all of these hold",
    ("throttle", "max_load"): "1-minute load average per core",
    ("throttle", "gpu_max_util"): "percent, per GPU considered free",
    ("limits", None): "rate limits tasks name in `uses:`; an example is at the end",
    ("approval", "categories"): 'e.g. ["external"]: these categories wait for `bantzd approve`',
    ("llm", "base_url"): "any OpenAI-compatible server: llama.cpp, vLLM, Ollama, a hosted API",
    ("llm", "fallback_models"): "tried in order when the model is unavailable",
    ("llm", "api_key_env"): "the API key is read from this environment variable",
    ("llm", "context_chars"): "longest input text sent in one request",
    ("llm", "timeout"): "per request",
    ("llm", "concurrency"): "requests an llm: task sends at once (its concurrency: overrides)",
    ("notify", "urls"): "apprise URLs: mailto://, tgram://, ntfy://, json://...",
    ("notify", "on"): "any of: " + ", ".join(NOTIFY_EVENTS),
    ("hooks", "on_finish"): "run with sh -c when a task ends (README: its variables)",
    ("hooks", "timeout"): "a hook still running after this is killed",
    ("agent", "fetch_allow"): "hosts or networks (10.0.0.0/8) the fetch tool may reach",
    ("agent", "fetch_max_bytes"): "the fetch tool stops reading a page past this",
    ("executor", "kind"): "local | slurm: where tasks run unless they say otherwise",
    ("executor.slurm", "partition"): "empty: the cluster's default",
    ("executor.slurm", "max_submitted"): "this home's jobs in Slurm at once",
    ("executor.slurm", "sbatch_args"): 'added to every job, e.g. ["--qos=night"]',
    ("executor.slurm", "poll_interval"): "one squeue for all jobs this often",
}

_FOOTER = """
# A rate limit tasks can take units from with `uses: {llm: 1}`:
# [limits.llm]
# per_minute = 50
# per_hour = 1000
# concurrent = 2
"""


def default_config_text() -> str:
    """config.toml with every setting at its default, commented (tomli-w writes no comments)."""
    import tomli_w

    lines = []
    table = ""
    for line in tomli_w.dumps(DEFAULTS).splitlines():
        m = re.match(r"^\[([A-Za-z_.]+)\]$", line)
        if m:
            table = m.group(1)
            note = _COMMENTS.get((table, None))
        else:
            key = re.match(r"^([A-Za-z_]+) = ", line)
            note = _COMMENTS.get((table, key.group(1))) if key else None
        lines.append(f"{line:<28} # {note}" if note else line)
    return _HEADER + "\n".join(lines) + "\n" + _FOOTER


def write_default_config(path: Path) -> bool:
    """Write the default config.toml; never overwrites. True when it wrote the file.

    The file appears complete or not at all (temp file, fsync, hard link), so a crash during
    `bantzd init` cannot leave a half file that a later `init` would refuse to replace.
    """
    from bantzd.queue.atomic import fsync_dir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return False
    data = default_config_text().encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # A filesystem without hard links: exclusive create is the next best thing.
            try:
                with open(path, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except FileExistsError:
                return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True
