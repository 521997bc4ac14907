"""The morning report as Markdown, from facts already gathered (SPEC section 6).

`render_report(NightFacts) -> str` touches no clock and no file (STYLE 2): the same facts
give the same bytes, so tests pin it with golden files and rewriting a report for the same
period changes nothing. Every fixed word comes from `i18n`; every piece of user text
(names, questions, results, log lines) is masked for secrets and put where it cannot break
the Markdown or the Mermaid chart.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from types import MappingProxyType
from typing import Any

from bantzd.clock import epoch
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, took
from bantzd.reports import machine
from bantzd.reports.agentline import agent_line
from bantzd.reports.causes import Ending, failure_cause
from bantzd.reports.comingup import ScheduleFacts, coming_up
from bantzd.reports.gantt import gantt, timeline_block
from bantzd.reports.i18n import Language, language
from bantzd.reports.markdown import cell, code, fenced, one_line, when
from bantzd.reports.nodes import nodes_text
from bantzd.reports.secrets import Masker

WOULD_NOT_FINISH = "would not finish before"  # the fit rule's reason (supervisor/fitting.py)
MISSED_DEADLINE = "missed deadline"  # the reason the supervisor gives (supervisor/timing.py)
DEPENDENCY_FAILED = "dependency failed"  # and for a failed `after:` (supervisor/scheduler.py)
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ResultLine:
    """What the Done table quotes: a line of text, or a short JSON object (shown as code)."""

    text: str
    is_json: bool = False


@dataclass(frozen=True)
class RejectedFile:
    """A spool file the period rejected: its name, the first line of what was wrong, and
    the command that resubmits it once fixed (the Not accepted section)."""

    file: str
    problem: str
    resubmit: str


@dataclass(frozen=True)
class NightFacts:
    """Everything a report says, already chosen for its period.

    `states`: the tasks the period concerns, with only the attempts in it; `events`: the
    journal events of the period, in order; `samples`: the load history samples of the
    period; `output_tails` and `results`: excerpts of failed tasks' output.log and done
    tasks' result files; `held_categories`: the approval category a held task is held for;
    `commands`: what a held task would run; `secrets`: values that must not appear;
    `rejected`: the spool files rejected in the period;
    `took`: each task's run time over all its attempts.
    """

    date: Date
    states: Sequence[TaskState]
    events: Sequence[Mapping[str, Any]] = ()
    samples: Sequence[Mapping[str, Any]] = ()
    language: str = "en"
    output_tails: Mapping[int, Sequence[str]] = field(default_factory=lambda: _EMPTY)
    results: Mapping[int, ResultLine] = field(default_factory=lambda: _EMPTY)
    held_categories: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    commands: Mapping[int, str] = field(default_factory=lambda: _EMPTY)
    secrets: Sequence[str] = ()
    rejected: Sequence[RejectedFile] = ()
    # What each task took over all its attempts, earlier nights' too (`states` only keep
    # this period's attempts): the same `took` as `list` and `show`. Absent: from `states`.
    took: Mapping[int, float] = field(default_factory=lambda: _EMPTY)
    # The home's schedules, for Coming up (reports/comingup.py); none: no such section.
    schedules: Sequence[ScheduleFacts] = ()
    # The estimate (seconds) each done task had when it ran (estimates.json), for Done.
    estimates: Mapping[int, float] = field(default_factory=lambda: _EMPTY)


def render_report(facts: NightFacts) -> str:
    """The report as Markdown, sections in SPEC order. Pure: same facts, same text."""
    return _Renderer(facts).render()


def _dependency(state: TaskState) -> str | None:
    """The `after:` reference of a task that failed because it failed (name or id)."""
    why = one_line(state.error or state.reason or "")
    if not why.startswith(DEPENDENCY_FAILED):
        return None
    return why[len(DEPENDENCY_FAILED) :].strip(" :") or None


def run_until(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The `--until` of the period's last supervisor start, None when it had none."""
    for e in reversed(events):
        if e.get("event") == machine.RUN_STARTED:
            until = e.get("until")
            return until if isinstance(until, str) else None
    return None


def run_span(events: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(started, ended) of the run in these events: the first supervisor start (else the
    first event) and the last stop, unless the supervisor started again after it, in which
    case the last event (it is still running, or died without saying so)."""
    timed = [e for e in events if isinstance(e.get("ts"), str)]
    if not timed:
        return None, None
    starts = [i for i, e in enumerate(timed) if e.get("event") == machine.RUN_STARTED]
    stops = [i for i, e in enumerate(timed) if e.get("event") == machine.RUN_STOPPED]
    first = timed[starts[0]] if starts else timed[0]
    if stops and (not starts or stops[-1] > starts[-1]):
        last = timed[stops[-1]]
    else:
        last = timed[-1]
    return first["ts"], last["ts"]


def token_counts(state: TaskState) -> tuple[int, int] | None:
    """(prompt, completion) tokens a task recorded, None when it recorded none."""
    tokens = state.tokens if isinstance(state.tokens, dict) else {}
    prompt, completion = tokens.get("prompt"), tokens.get("completion")
    ok = [isinstance(v, int) and not isinstance(v, bool) for v in (prompt, completion)]
    if not any(ok):
        return None
    return (prompt if ok[0] else 0), (completion if ok[1] else 0)  # type: ignore[return-value]


def report_summary_line(text: str) -> str:
    """The one line under a report's title (what a notification carries).

    Named for the report: `bantzd run` prints another summary line, of the queue.
    """
    lines = text.splitlines()
    return lines[2] if len(lines) > 2 else ""


class _Renderer:
    """One rendering: the facts, the language, and the masker for user text."""

    def __init__(self, facts: NightFacts) -> None:
        self.f = facts
        self.lang: Language = language(facts.language)
        self.mask = Masker(facts.secrets)
        self.by_status: dict[Status, list[TaskState]] = {s: [] for s in Status}
        for state in sorted(facts.states, key=lambda s: s.id):
            self.by_status[state.status].append(state)
        self.started, self.ended = run_span(facts.events)

    def render(self) -> str:
        b = self.by_status
        sections = [
            self.title(),
            self.needs_you(b[Status.WAITING_HUMAN], b[Status.HELD]),
            *self.not_accepted(),
            self.done(b[Status.DONE]),
            self.failed(b[Status.FAILED]),
            self.still_queued(b[Status.QUEUED], b[Status.RUNNING]),
            *self.coming_up(),
            self.machine(),
            self.timeline(),
        ]
        # A second pass catches a secret that reached the text some other way.
        return self.mask("\n\n".join(sections) + "\n")

    # pieces ------------------------------------------------------------------------------

    def text(self, value: object) -> str:
        """User text on one line, secrets masked."""
        return one_line(self.mask(str(value)))

    def label(self, state: TaskState) -> str:
        return f"#{state.id} {code(self.mask(state.name))}"

    def heading(self, key: str) -> str:
        return f"## {self.lang.t(key)}"

    # sections ----------------------------------------------------------------------------

    def title(self) -> str:
        t, b = self.lang.t, self.by_status
        if self.started and self.ended:
            run = t("run_span", start=when(self.started), end=when(self.ended, self.started))
        elif self.started:
            run = t("run_started", start=when(self.started))
        elif self.ended:
            run = t("run_ended", end=when(self.ended))
        else:
            run = t("no_run")
        n = self.lang.n
        counts = [
            n("count_done", len(b[Status.DONE])),
            n("count_failed", len(b[Status.FAILED])),
            n("count_waiting", len(b[Status.WAITING_HUMAN]) + len(b[Status.HELD])),
            n("count_queued", len(b[Status.QUEUED])),
        ]
        if b[Status.RUNNING]:
            counts.append(n("count_running", len(b[Status.RUNNING])))
        if b[Status.CANCELLED]:
            counts.append(n("count_cancelled", len(b[Status.CANCELLED])))
        date = self.f.date.isoformat()
        return f"# {t('title', date=date)}\n\n{run} · " + " · ".join(counts) + "."

    def needs_you(self, waiting: list[TaskState], held: list[TaskState]) -> str:
        t = self.lang.t
        items: list[str] = []
        for state in waiting:
            q = state.question if isinstance(state.question, dict) else {}
            question = self.text(q.get("text") or "")
            raw_choices = q.get("choices") if isinstance(q.get("choices"), list) else []
            choices = [self.text(c) for c in raw_choices]
            asks = t("asks", question=question) if question else t("asks_nothing")
            if choices:
                asks += f" ({t('choices', choices=', '.join(choices))})"
            answer = shlex.quote(str(raw_choices[0])) if raw_choices else f'"{t("your_answer")}"'
            command = code(self.mask(f"bantzd answer {state.id} {answer}"))
            items.append(f"- {self.label(state)} {asks}\n  {command}")
        for state in held:
            what = t("held")
            category = self.f.held_categories.get(state.id)
            if category:
                what += f" ({t('held_category', category=self.text(category))})"
            commands = t(
                "approve_or_reject",
                approve=f"`bantzd approve {state.id}`",
                reject=f"`bantzd reject {state.id}`",
            )
            item = f"- {self.label(state)} {what}: {commands}"
            command = self.f.commands.get(state.id)
            if command:
                item += f"\n  {t('runs', command=code(self.mask(command)))}"
            items.append(item)
        body = "\n".join(items) if items else t("nothing_waits")
        return f"{self.heading('needs_you')}\n\n{body}"

    def not_accepted(self) -> list[str]:
        """Files rejected in the period, each with its first error line and the command
        that resubmits it; no section at all when there were none."""
        if not self.f.rejected:
            return []
        t = self.lang.t
        items = [
            f"- {code(self.mask(r.file))}: {self.text(r.problem)}\n"
            f"  {t('resubmit', command=code(self.mask(r.resubmit)))}"
            for r in self.f.rejected
        ]
        return [f"{self.heading('not_accepted')}\n\n" + "\n".join(items)]

    def done(self, done: list[TaskState]) -> str:
        t = self.lang.t
        if not done:
            return f"{self.heading('done')}\n\n{t('nothing_done')}"
        with_tokens = any(token_counts(s) for s in done)
        with_estimates = any(s.id in self.f.estimates for s in done)
        head = ["col_id", "col_name", "col_took", "col_attempts"]
        align = ["---:", "---", "---:", "---:"]
        if with_estimates:
            head.insert(3, "col_estimate")
            align.insert(3, "---:")
        if with_tokens:
            head.append("col_tokens")
            align.append("---:")
        with_agent = any(agent_line(s, self.lang) for s in done)
        if with_agent:
            head.append("col_agent")
            align.append("---")
        head.append("col_result")
        align.append("---")
        rows = [
            "| " + " | ".join(t(h) for h in head) + " |",
            "| " + " | ".join(align) + " |",
        ]
        for state in done:
            seconds = self.f.took.get(state.id, took(state))
            cells = [
                str(state.id),
                code(self.mask(state.name)),
                self.lang.duration(seconds) if seconds is not None else "?",
                self.lang.integer(state.attempts),
            ]
            if where := nodes_text(state):  # a Slurm task: the node(s) it ran on
                cells[2] += f" · {where}"
            if with_estimates:
                estimate = self.f.estimates.get(state.id)
                cells.insert(3, self.lang.duration(estimate) if estimate is not None else "")
            if with_tokens:
                counts = token_counts(state)
                cells.append(
                    f"{self.lang.integer(counts[0])} + {self.lang.integer(counts[1])}"
                    if counts
                    else ""
                )
            if with_agent:
                cells.append(agent_line(state, self.lang) or "")
            cells.append(self.result(self.f.results.get(state.id)))
            rows.append("| " + " | ".join(cell(c) for c in cells) + " |")
        text = f"{self.heading('done')}\n\n" + "\n".join(rows)
        total = self.tokens_total()
        return f"{text}\n\n{total}" if total else text

    def result(self, line: ResultLine | str | None) -> str:
        if line is None:
            return ""
        if isinstance(line, str):
            line = ResultLine(line)
        text = self.text(line.text)
        return code(text) if line.is_json else text

    def tokens_total(self) -> str | None:
        counted = [c for s in self.f.states if (c := token_counts(s))]
        if not counted:
            return None
        prompt = sum(c[0] for c in counted)
        completion = sum(c[1] for c in counted)
        i = self.lang.integer
        return self.lang.t(
            "tokens_total", prompt=i(prompt), completion=i(completion), total=i(prompt + completion)
        )

    def failed(self, failed: list[TaskState]) -> str:
        """Per task: the cause in the heading when its log shows one, how it ended, the
        command that runs it again, and the end of its log."""
        if not failed:
            return f"{self.heading('failed')}\n\n{self.lang.t('nothing_failed')}"
        blocks = [self.heading("failed")]
        for state in failed:
            raw_tail = self.f.output_tails.get(state.id) or []
            tail = [self.mask(line) for line in raw_tail]
            heading = f"### {self.label(state)}"
            cause = None
            if state.attempts:
                ending = Ending(state.exit_code, state.signal, state.error or state.reason)
                cause = failure_cause(raw_tail, ending)
            if cause:
                heading += f" — {code(self.text(cause))}"
            body = " · ".join(self.how_it_failed(state)) + "\n\n" + self.retry_hint(state)
            if tail:
                body += "\n\n" + fenced(tail)
            elif state.attempts:
                body += "\n\n" + self.lang.t("no_output")
            blocks.append(f"{heading}\n\n{body}")
        return "\n\n".join(blocks)

    def retry_hint(self, state: TaskState) -> str:
        """`Run it again: bantzd retry 5`; for a failed dependency, that one first."""
        t = self.lang.t
        retry = code(f"bantzd retry {state.id}")
        dependency = _dependency(state)
        if dependency is not None and state.attempts == 0:
            first = code(self.mask(f"bantzd retry {shlex.quote(dependency)}"))
            return t("retry_dependency_first", first=first, command=retry)
        return t("retry_with", command=retry)

    def how_it_failed(self, state: TaskState) -> list[str]:
        t = self.lang.t
        why = one_line(state.error or state.reason or "")
        if not state.attempts:
            return [self.never_started(why)]
        facts = []
        if why.startswith(MISSED_DEADLINE):  # an older attempt ran; then the deadline passed
            rest = self.text(why[len(MISSED_DEADLINE) :].strip(" :"))
            facts.append(t("missed_deadline_at", when=rest) if rest else t("missed_deadline"))
            why = ""
        end = self.end(state)
        if end is None and not why:
            end = t("no_exit_status")
        facts += [e for e in (end,) if e] + [self.lang.n("attempts", state.attempts)]
        if where := nodes_text(state):
            facts.append(self.text(where))  # the Slurm node(s) it ran on
        if agent := agent_line(state, self.lang):
            facts.append(self.mask(agent))
        # The supervisor's error for a plain failure restates the exit status: skip it.
        plain = (f"exit {state.exit_code}", f"exit code {state.exit_code}", "killed by")
        if why and not why.startswith(plain):
            facts.append(self.text(why))
        return facts

    def never_started(self, why: str) -> str:
        """`never started: dependency prepare-data failed`, `never started: its deadline
        passed (06:00)`, or `never started: WHY`."""
        t = self.lang.t
        if why.startswith(MISSED_DEADLINE):
            rest = self.text(why[len(MISSED_DEADLINE) :].strip(" :"))
            return (
                t("never_started_deadline_at", when=rest) if rest else t("never_started_deadline")
            )
        if why.startswith(DEPENDENCY_FAILED):
            dependency = self.text(why[len(DEPENDENCY_FAILED) :].strip(" :"))
            return t("never_started_dependency", dependency=code(dependency))
        return t("never_started_because", why=self.text(why)) if why else t("never_started")

    def end(self, state: TaskState) -> str | None:
        """`exit code 3`, `signal 9 (SIGKILL)`, or None when neither was recorded."""
        t = self.lang.t
        if state.signal is not None:
            try:
                name = signal.Signals(state.signal).name
            except ValueError:
                return t("signal", signal=state.signal)
            return t("signal_named", signal=state.signal, name=name)
        if state.exit_code is not None:
            return t("exit_code", code=state.exit_code)
        return None

    def still_queued(self, queued: list[TaskState], running: list[TaskState]) -> str:
        t = self.lang.t
        items: list[str] = []
        for state in running:
            what = t("running", n=state.attempts)
            p = state.progress if isinstance(state.progress, dict) else {}
            percent = machine.finite_number(p.get("percent"))
            if percent is not None:
                what += f", {self.lang.percent(percent)}"
            if p.get("message"):
                what += f" {self.text(p['message'])}"
            items.append(f"- {self.label(state)}: {what}")
        for state in queued:
            reason = self.text(state.reason) if state.reason else t("ready")
            items.append(f"- {self.label(state)}: {reason}")
        body = "\n".join(items) if items else t("nothing_queued")
        held_back = [
            self.label(s) for s in queued if one_line(s.reason or "").startswith(WOULD_NOT_FINISH)
        ]
        if held_back:
            body += "\n\n" + self.lang.n("held_back", len(held_back), tasks=", ".join(held_back))
        return f"{self.heading('still_queued')}\n\n{body}"

    def coming_up(self) -> list[str]:
        if not self.f.schedules:
            return []
        return [coming_up(self.lang, self.f.schedules, self.f.states, self.text)]

    def machine(self) -> str:
        lang, t = self.lang, self.lang.t
        lines: list[str] = []
        cpu = machine.cpu_load(self.f.samples)
        if cpu is not None:
            lines.append(
                "- "
                + t(
                    "cpu_load",
                    average=lang.number(cpu.average),
                    peak=lang.number(cpu.peak),
                    samples=lang.n("samples", cpu.count),
                )
            )
        for gpu in machine.gpu_loads(self.f.samples):
            if gpu.util is not None:
                line = t(
                    "gpu_util",
                    index=gpu.index,
                    average=lang.percent(gpu.util.average),
                    peak=lang.percent(gpu.util.peak),
                )
            else:
                line = t("gpu_no_util", index=gpu.index)
            if gpu.least_free is not None:
                line += "; " + t("gpu_free", size=self.size(gpu.least_free))
            lines.append(f"- {line}.")
        if not lines:
            lines.append(t("no_load"))
        lines.extend(self.throttled())
        return f"{self.heading('machine')}\n\n" + "\n".join(lines)

    def size(self, n: int) -> str:
        for unit, power in (("TiB", 4), ("GiB", 3), ("MiB", 2), ("KiB", 1)):
            if n >= 1024**power:
                text = self.lang.number(n / 1024**power, 1)
                return f"{text.removesuffix(self.lang.decimal + '0')} {unit}"
        return f"{n} B"

    def throttled(self) -> list[str]:
        t = self.lang.t
        run_end = epoch(self.ended)
        spans = machine.throttle_spans(self.f.events, run_end)
        if spans is None:
            spans = machine.sample_spans(self.f.samples)
        kinds = machine.throttling(spans)
        if not kinds:
            return ["- " + t("never_throttled")]
        total = sum(k.seconds for k in kinds)
        lines = ["- " + t("throttled", duration=self.lang.duration(total))]
        for k in kinds:
            example = code(self.mask(k.example))
            lines.append(
                "  - "
                + t(
                    "throttled_kind",
                    kind=self.text(k.kind),
                    duration=self.lang.duration(k.seconds),
                    example=example,
                )
            )
        return lines

    def timeline(self) -> str:
        states = sorted(self.f.states, key=lambda s: s.id)
        lines = gantt(states, self.ended, self.lang, self.mask, night_end=run_until(self.f.events))
        body = timeline_block(lines) if lines else self.lang.t("no_attempts")
        return f"{self.heading('timeline')}\n\n{body}"


def json_summary(data: object, limit: int = 120) -> str:
    """A short one-line JSON form of a result without a `summary` field."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 2].rstrip() + " …"
