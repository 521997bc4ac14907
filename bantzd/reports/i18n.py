"""Every fixed word of the morning report and of the notifications, per language.

One table per language with the same keys and the same `{placeholders}` (a test checks
both), plus the few things that are not words: the decimal and thousands separators, where
the percent sign goes, and the duration units. Adding a language is adding a table.

Values are plain strings, or (singular, plural) pairs for texts that take a count `{n}`;
Turkish does not inflect a noun after a number, so its pairs say the same thing twice.
What the supervisor writes itself (queue reasons like `outside window 23:00-07:00`, error
messages) is quoted as it was recorded, not translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

Text = str | tuple[str, str]

EN: dict[str, Text] = {
    # title and summary line
    "title": "Morning report {date}",
    "run_span": "Run {start} → {end}",
    "run_started": "Run started {start}",
    "run_ended": "Run ended {end}",
    "no_run": "No supervisor run since the previous report",
    "count_done": "{n} finished",
    "count_failed": "{n} failed",
    "count_waiting": "{n} waiting for you",
    "count_queued": "{n} still queued",
    "count_running": "{n} running",
    "count_cancelled": "{n} cancelled",
    # sections
    "needs_you": "Needs you",
    "done": "Done",
    "failed": "Failed",
    "still_queued": "Still queued",
    "machine": "Machine",
    "timeline": "Timeline",
    # needs you
    "asks": "asks: {question}",
    "asks_nothing": "is waiting for an answer",
    "choices": "choices: {choices}",
    "your_answer": "YOUR ANSWER",
    "held": "is held for approval",
    "held_category": "category {category}",
    "approve_or_reject": "{approve} (or {reject})",
    "runs": "runs: {command}",
    "nothing_waits": "Nothing is waiting for you.",
    # not accepted
    "not_accepted": "Not accepted",
    "resubmit": "fix it, then {command}",
    # done
    "col_id": "id",
    "col_name": "name",
    "col_took": "took",
    "col_estimate": "estimate",
    "col_attempts": "attempts",
    "col_tokens": "tokens (prompt + completion)",
    "col_result": "result",
    "nothing_done": "No task finished.",
    "tokens_total": "Tokens used: {prompt} prompt + {completion} completion = {total}.",
    "col_agent": "agent",
    "agent_steps": ("{n} step", "{n} steps"),
    "agent_calls": "tool calls: {calls}",
    "agent_no_calls": "no tool calls",
    "agent_plan": "plan {done}/{total} done",
    # failed
    "exit_code": "exit code {code}",
    "signal": "signal {signal}",
    "signal_named": "signal {signal} ({name})",
    "never_started": "never started",
    "never_started_because": "never started: {why}",
    "never_started_deadline": "never started: its deadline passed",
    "never_started_deadline_at": "never started: its deadline passed ({when})",
    "never_started_dependency": "never started: dependency {dependency} failed",
    "retry_with": "Run it again: {command}",
    "retry_dependency_first": "Run its dependency again first: {first}, then {command}",
    "no_exit_status": "no exit status recorded",
    "attempts": ("{n} attempt", "{n} attempts"),
    "missed_deadline": "missed its deadline",
    "missed_deadline_at": "missed its deadline ({when})",
    "no_output": "No output.",
    "nothing_failed": "Nothing failed.",
    # still queued
    "running": "running, attempt {n}",
    "ready": "ready to start",
    "nothing_queued": "Nothing is left in the queue.",
    "held_back": (
        "Not started, as it would not finish before the end: {tasks}.",
        "Not started, as they would not finish before the end: {tasks}.",
    ),
    # machine
    "cpu_load": "CPU load per core: average {average}, peak {peak} ({samples}).",
    "samples": ("{n} sample", "{n} samples"),
    "gpu_util": "GPU {index}: utilisation average {average}, peak {peak}",
    "gpu_no_util": "GPU {index}: utilisation not reported",
    "gpu_free": "least free memory {size}",
    "no_load": "No load history recorded.",
    "throttled": "Starts were throttled for {duration} in all:",
    "throttled_kind": "{kind}: {duration}, e.g. {example}",
    "never_throttled": "Starts were never throttled.",
    # timeline
    "attempt": "attempt {n}",
    "outcome_asked": "asked",
    "outcome_interrupted": "interrupted",
    "outcome_cancelled": "cancelled",
    "no_attempts": "No attempts ran in this period.",
    "night_end": "End of the run",
    # coming up (schedules)
    "coming_up": "Coming up",
    "next_firing": "next firing {when}",
    "schedule_paused": "paused (bantzd schedule resume to fire again)",
    "schedule_ended": "ended: it fires no more",
    "firing_skipped": "firing of {when} skipped: {because} was not finished",
    "firings_missed": (
        "{n} firing missed while no supervisor ran (the last of {when})",
        "{n} firings missed while no supervisor ran (the last of {when})",
    ),
    "no_firing": "no firing in this period",
    "status_queued": "queued",
    "status_running": "running",
    "status_done": "done",
    "status_failed": "failed",
    "status_held": "held for approval",
    "status_waiting_human": "waiting for your answer",
    "status_cancelled": "cancelled",
    # notifications
    "notify_report": "bantzd: morning report {date}",
    "notify_question": "bantzd: task {id} ({name}) asks a question",
    "notify_question_body": "{question}\nAnswer with: {command}",
    "notify_failed": "bantzd: task {id} ({name}) failed",
    "notify_failed_body": "{what}\nSee: {command}",
}

TR: dict[str, Text] = {
    "title": "Sabah raporu {date}",
    "run_span": "Çalışma {start} → {end}",
    "run_started": "Çalışma başladı: {start}",
    "run_ended": "Çalışma bitti: {end}",
    "no_run": "Önceki rapordan bu yana hiç çalışma olmadı",
    "count_done": "{n} tamamlandı",
    "count_failed": "{n} başarısız",
    "count_waiting": "{n} sizi bekliyor",
    "count_queued": "{n} hâlâ sırada",
    "count_running": "{n} çalışıyor",
    "count_cancelled": "{n} iptal edildi",
    "needs_you": "Sizi bekleyenler",
    "done": "Tamamlananlar",
    "failed": "Başarısız olanlar",
    "still_queued": "Sırada bekleyenler",
    "machine": "Makine",
    "timeline": "Zaman çizelgesi",
    "asks": "soruyor: {question}",
    "asks_nothing": "bir yanıt bekliyor",
    "choices": "seçenekler: {choices}",
    "your_answer": "YANITINIZ",
    "held": "onay bekliyor",
    "held_category": "kategori {category}",
    "approve_or_reject": "{approve} (ya da {reject})",
    "runs": "çalıştıracağı: {command}",
    "nothing_waits": "Sizi bekleyen bir şey yok.",
    "not_accepted": "Kabul edilmeyenler",
    "resubmit": "düzeltin, sonra {command}",
    "col_id": "no",
    "col_name": "ad",
    "col_took": "süre",
    "col_estimate": "tahmin",
    "col_attempts": "deneme",
    "col_tokens": "token (istem + yanıt)",
    "col_result": "sonuç",
    "nothing_done": "Tamamlanan görev yok.",
    "tokens_total": "Kullanılan token: {prompt} istem + {completion} yanıt = {total}.",
    "col_agent": "ajan",
    "agent_steps": ("{n} adım", "{n} adım"),
    "agent_calls": "araç çağrıları: {calls}",
    "agent_no_calls": "araç çağrısı yok",
    "agent_plan": "plan {done}/{total} tamam",
    "exit_code": "çıkış kodu {code}",
    "signal": "sinyal {signal}",
    "signal_named": "sinyal {signal} ({name})",
    "never_started": "hiç başlamadı",
    "never_started_because": "hiç başlamadı: {why}",
    "never_started_deadline": "hiç başlamadı: son başlama saati geçti",
    "never_started_deadline_at": "hiç başlamadı: son başlama saati geçti ({when})",
    "never_started_dependency": "hiç başlamadı: bağlı olduğu {dependency} başarısız oldu",
    "retry_with": "Yeniden çalıştırmak için: {command}",
    "retry_dependency_first": "Önce bağlı olduğu görevi çalıştırın: {first}, sonra {command}",
    "no_exit_status": "çıkış durumu kaydedilmedi",
    "attempts": ("{n} deneme", "{n} deneme"),
    "missed_deadline": "son başlama saatini kaçırdı",
    "missed_deadline_at": "son başlama saatini kaçırdı ({when})",
    "no_output": "Çıktı yok.",
    "nothing_failed": "Başarısız görev yok.",
    "running": "çalışıyor, deneme {n}",
    "ready": "başlamaya hazır",
    "nothing_queued": "Sırada bekleyen görev yok.",
    "held_back": (
        "Bitişe kadar tamamlanamayacağı için başlatılmadı: {tasks}.",
        "Bitişe kadar tamamlanamayacakları için başlatılmadı: {tasks}.",
    ),
    "cpu_load": "Çekirdek başına CPU yükü: ortalama {average}, en yüksek {peak} ({samples}).",
    "samples": ("{n} ölçüm", "{n} ölçüm"),
    "gpu_util": "GPU {index}: kullanım ortalama {average}, en yüksek {peak}",
    "gpu_no_util": "GPU {index}: kullanım bildirilmedi",
    "gpu_free": "en az boş bellek {size}",
    "no_load": "Yük geçmişi kaydedilmemiş.",
    "throttled": "Yeni görevlerin başlatılması toplam {duration} kısıtlandı:",
    "throttled_kind": "{kind}: {duration}, örneğin {example}",
    "never_throttled": "Yeni görevlerin başlatılması hiç kısıtlanmadı.",
    "attempt": "deneme {n}",
    "outcome_asked": "soru sordu",
    "outcome_interrupted": "kesildi",
    "outcome_cancelled": "iptal edildi",
    "no_attempts": "Bu dönemde hiç deneme çalışmadı.",
    "night_end": "Çalışmanın sonu",
    "coming_up": "Sıradaki zamanlanmış görevler",
    "next_firing": "bir sonraki çalışma {when}",
    "schedule_paused": "duraklatıldı (yeniden başlatmak için: bantzd schedule resume)",
    "schedule_ended": "sona erdi: artık çalışmayacak",
    "firing_skipped": "{when} çalışması atlandı: {because} henüz bitmemişti",
    "firings_missed": (
        "supervisor çalışmazken {n} çalışma kaçırıldı (sonuncusu {when})",
        "supervisor çalışmazken {n} çalışma kaçırıldı (sonuncusu {when})",
    ),
    "no_firing": "bu dönemde çalışma yok",
    "status_queued": "sırada",
    "status_running": "çalışıyor",
    "status_done": "tamamlandı",
    "status_failed": "başarısız",
    "status_held": "onay bekliyor",
    "status_waiting_human": "yanıtınızı bekliyor",
    "status_cancelled": "iptal edildi",
    "notify_report": "bantzd: sabah raporu {date}",
    "notify_question": "bantzd: {id} numaralı görev ({name}) bir soru soruyor",
    "notify_question_body": "{question}\nYanıtlamak için: {command}",
    "notify_failed": "bantzd: {id} numaralı görev ({name}) başarısız oldu",
    "notify_failed_body": "{what}\nAyrıntılar: {command}",
}


@dataclass(frozen=True)
class Language:
    """A table of words plus how that language writes numbers, percents and durations."""

    code: str
    words: Mapping[str, Text]
    decimal: str = "."
    thousands: str = ","
    percent_first: bool = False  # Turkish writes %35, English 35%
    # day, hour, minute, second; `unit_space` goes between a number and its unit
    units: tuple[str, str, str, str] = ("d", "h", "m", "s")
    unit_space: str = ""

    def t(self, key: str, **values: object) -> str:
        """The text for `key` with `values` filled in."""
        text = self.words[key]
        if isinstance(text, tuple):
            text = text[0]
        return text.format(**values)

    def n(self, key: str, n: int, **values: object) -> str:
        """The text for `key` that takes a count: singular or plural by `n`."""
        text = self.words[key]
        if isinstance(text, tuple):
            text = text[0] if n == 1 else text[1]
        return text.format(n=self.integer(n), **values)

    def integer(self, n: int) -> str:
        """`1,234` in English, `1.234` in Turkish."""
        return f"{n:,}".replace(",", self.thousands)

    def number(self, x: float, decimals: int = 2) -> str:
        """`0.42` in English, `0,42` in Turkish."""
        whole, _, frac = f"{x:,.{decimals}f}".partition(".")
        whole = whole.replace(",", self.thousands)
        return f"{whole}{self.decimal}{frac}" if frac else whole

    def percent(self, x: float) -> str:
        """`35%`, or `%35` where the sign comes first."""
        text = self.number(x, 0)
        return f"%{text}" if self.percent_first else f"{text}%"

    def duration(self, seconds: float) -> str:
        """The two largest units, zero parts dropped: `45s`, `12m 5s`, `1h 12m`, `2d 3h`."""
        total = max(0, round(seconds))
        day, hour, minute, second = self.units
        parts: list[tuple[int, str]] = []
        for unit, size in ((day, 86400), (hour, 3600), (minute, 60), (second, 1)):
            if total >= size or parts:
                count, total = divmod(total, size)
                parts.append((count, unit))
            if len(parts) == 2:
                break
        shown = [f"{count}{self.unit_space}{unit}" for count, unit in parts if count]
        return " ".join(shown) or f"0{self.unit_space}{second}"


LANGUAGES: Mapping[str, Language] = MappingProxyType(
    {
        "en": Language("en", MappingProxyType(EN)),
        "tr": Language(
            "tr",
            MappingProxyType(TR),
            decimal=",",
            thousands=".",
            percent_first=True,
            units=("g", "sa", "dk", "sn"),
            unit_space=" ",
        ),
    }
)


def language(code: str | None) -> Language:
    """The table for `code` (`tr`, `tr_TR.UTF-8`, `TR-tr`), English when there is none."""
    key = (code or "en").strip().lower().replace("-", "_").split("_")[0].split(".")[0]
    return LANGUAGES.get(key, LANGUAGES["en"])
