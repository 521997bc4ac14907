"""Keeping secret values out of reports and notifications (and reading the task files
whose `env` holds them, for both: here, so that neither imports the other).

The known secrets are the values of `env` keys that look secret (`*KEY*`, `*TOKEN*`,
`*SECRET*`, `*PASSWORD*`) in the tasks' task.yaml, and the same in the environment the
report is written from (which the tasks inherited). A task can print one, or put it in a
result or a question; `Masker` replaces each occurrence with `***` in any text.

Long values are masked wherever they occur. Short ones (3 to 5 characters) only as a whole
word, and never the handful of words that are settings rather than secrets
(`TOKENIZERS_PARALLELISM: false`): masking every "false" would garble a report and hide
nothing. One- and two-character values are not masked at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from bantzd.paths import TaskPaths

MASK = "***"
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MIN_ANYWHERE = 6
MIN_WORD = 3
# Secrets found in the environment the report is written from are masked from this length
# on: the environment holds many short secret-looking settings that are not secrets.
MIN_ENV_SECRET = 8
NOT_SECRET = frozenset(
    {"true", "false", "yes", "no", "on", "off", "null", "none", "auto", "all", "1", "0"}
)


def _harmless(value: str) -> bool:
    return value.lower() in NOT_SECRET or value.isdigit()


def looks_secret(key: object) -> bool:
    """Whether an environment variable name looks like it holds a secret."""
    upper = str(key).upper()
    return any(word in upper for word in SECRET_WORDS)


def secret_values(env: object) -> list[str]:
    """The values of the secret-looking keys of an `env` mapping (non-mappings: none)."""
    if not isinstance(env, Mapping):
        return []
    found = []
    for key, value in env.items():
        if not looks_secret(key) or value is None or isinstance(value, dict | list):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        if text:
            found.append(text)
    return found


class Masker:
    """Replaces known secret values in text with `***`; pure once built."""

    def __init__(self, values: Iterable[str]) -> None:
        anywhere: set[str] = set()
        words: set[str] = set()
        for value in values:
            if len(value) >= MIN_ANYWHERE:
                anywhere.add(value)
            elif len(value) >= MIN_WORD and not _harmless(value):
                words.add(value)
        parts = [re.escape(v) for v in sorted(anywhere, key=lambda v: (-len(v), v))]
        parts += [
            rf"(?<![\w]){re.escape(v)}(?![\w])" for v in sorted(words, key=lambda v: (-len(v), v))
        ]
        self._pattern = re.compile("|".join(parts)) if parts else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)


def environment_secrets(env: Mapping[str, str]) -> list[str]:
    """Long secret-looking values of the environment the report is written from."""
    return [v for k, v in env.items() if looks_secret(k) and len(v) >= MIN_ENV_SECRET]


def read_task_file(paths: TaskPaths, *, only_with: bytes | None = None) -> dict[str, Any]:
    """task.yaml parsed with the safe loader; {} when it cannot be read.

    With `only_with`, a file that does not contain those bytes is not parsed at all (a
    report over thousands of queued tasks need not parse every file to find their `env`).
    """
    import yaml

    try:
        data = paths.task_yaml.read_bytes()
        if only_with is not None and only_with not in data:
            return {}
        doc = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}
