"""The report's **Coming up** section (SPEC 9): each schedule's next firing, and what its
firings of the period became (instances with their outcome, firings skipped or missed).

`gather_schedules` reads `schedules/` for a period; `coming_up` renders the facts, touching
no clock and no file, like the rest of the report (reports/render.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bantzd.clock import epoch
from bantzd.paths import Home
from bantzd.queue.task import TaskState
from bantzd.reports.i18n import Language
from bantzd.reports.markdown import code, when


@dataclass(frozen=True)
class ScheduleFacts:
    """One schedule as the report sees it: `skipped` and `missed` are (firing, why) of the
    period; `missed` counts firings (a line may stand for several)."""

    name: str
    next_fire: str | None
    paused: bool = False
    skipped: tuple[tuple[str, str], ...] = ()
    missed: tuple[tuple[str, int], ...] = ()


def gather_schedules(home: Home, since: float | None, until: float) -> list[ScheduleFacts]:
    """Every schedule of `home`, with what of its state falls in (since, until]."""
    from bantzd.queue import schedules as disk

    def within(entry: object) -> bool:
        t = epoch(entry.get("at")) if isinstance(entry, dict) else None
        return t is not None and (since is None or t > since) and t <= until

    out = []
    for name in disk.schedule_names(home):
        state = disk.read_schedule_state(home, name) or disk.ScheduleState(name)
        skipped = tuple(
            (str(e.get("firing")), str(e.get("because"))) for e in state.skipped if within(e)
        )
        missed = tuple(
            (str(e.get("firing")), int(e.get("count") or 1)) for e in state.missed if within(e)
        )
        out.append(ScheduleFacts(name, state.next_fire, state.paused, skipped, missed))
    return out


def coming_up(
    lang: Language,
    schedules: Sequence[ScheduleFacts],
    states: Sequence[TaskState],
    text: Callable[[object], str],
) -> str:
    """The section's Markdown: a line per schedule, then its instances of the period."""
    t = lang.t
    lines = [f"## {t('coming_up')}", ""]
    for s in sorted(schedules, key=lambda s: s.name):
        if s.paused:
            nxt = t("schedule_paused")
        elif s.next_fire:
            nxt = t("next_firing", when=when(s.next_fire))
        else:
            nxt = t("schedule_ended")
        lines.append(f"- {code(text(s.name))}: {nxt}")
        made = sorted((st for st in states if st.schedule == s.name), key=lambda st: st.id)
        for st in made:
            lines.append(f"  - #{st.id} {code(text(st.name))}: {t('status_' + str(st.status))}")
        for firing, because in s.skipped:
            lines.append(f"  - {t('firing_skipped', when=when(firing), because=text(because))}")
        for firing, count in s.missed:
            lines.append(f"  - {lang.n('firings_missed', count, when=when(firing))}")
        if not (made or s.skipped or s.missed):
            lines.append(f"  - {t('no_firing')}")
    return "\n".join(lines)
