"""Settings a person changed with a command instead of config.toml: `bantzd parallel N`.

The override lives in its own small file in the home (`parallel.json`), not in config.toml,
so bantzd never rewrites a file the person edits by hand (their comments and layout stay),
and `bantzd parallel --reset` can go back to exactly what config.toml says. It is written by
the lock holder only (the running supervisor, or the CLI while none runs: supervisor/control.py),
read by every supervisor at its start, and shown by `bantzd status`, so it survives a restart
and works while no supervisor runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from bantzd.clock import iso
from bantzd.config import MAX_PARALLEL, Config
from bantzd.paths import Home
from bantzd.queue.atomic import fsync_dir, read_json, write_json_atomic

log = logging.getLogger("bantzd")

PARALLEL_FILE = "parallel.json"


def parallel_path(home: Home) -> Path:
    return home.root / PARALLEL_FILE


def check_parallel(value: Any) -> int:
    """`value` as a max_parallel (a whole number from 1 to config.MAX_PARALLEL), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARALLEL:
        raise ValueError(
            f"max_parallel must be a whole number from 1 to {MAX_PARALLEL}, not {value!r}"
        )
    return value


def read_parallel(home: Home) -> tuple[int | None, str | None]:
    """The `bantzd parallel` override (None when there is none) and what is wrong with the
    file, if anything. A damaged file is ignored (config.toml's value applies), not fatal:
    the supervisor must still start at 23:00."""
    path = parallel_path(home)
    try:
        data = read_json(path, default=None)
    except (OSError, ValueError) as e:
        return None, f"{path} cannot be read ({getattr(e, 'strerror', None) or e}); ignored"
    if data is None:
        return None, None
    try:
        return check_parallel(data.get("max_parallel") if isinstance(data, dict) else None), None
    except ValueError as e:
        return None, f"{path}: {e}; ignored (`bantzd parallel N` or `--reset` rewrites it)"


def write_parallel(home: Home, value: int, now: float) -> None:
    """Persist the override (lock holder only)."""
    write_json_atomic(
        parallel_path(home), {"max_parallel": check_parallel(value), "set_at": iso(now)}
    )


def clear_parallel(home: Home) -> bool:
    """Remove the override (lock holder only); whether there was one."""
    try:
        os.unlink(parallel_path(home))
    except FileNotFoundError:
        return False
    fsync_dir(home.root)
    return True


def effective(home: Home, config: Config) -> Config:
    """`config` with the `bantzd parallel` override applied (what a supervisor runs with)."""
    value, problem = read_parallel(home)
    if problem:
        log.warning("%s", problem)
    if value is None or value == config.max_parallel:
        return config
    log.info(
        "max_parallel %d (set by bantzd parallel; config.toml says %d)", value, config.max_parallel
    )
    return dataclasses.replace(config, max_parallel=value)


def parallel_status(home: Home) -> dict[str, Any]:
    """`{"value", "config", "override"}` for `bantzd status` and `bantzd parallel`.

    `config` is config.toml's max_parallel (None when config.toml is broken: `status` must
    still work on a sick home); `value` is what a supervisor started now would use."""
    from bantzd.config import load_config
    from bantzd.errors import BantzError

    try:
        configured: int | None = load_config(home.config).max_parallel
    except (BantzError, OSError, ValueError):
        configured = None
    override, _ = read_parallel(home)
    value = override if override is not None else configured
    return {"value": value, "config": configured, "override": override}


def parallel_text(info: dict[str, Any]) -> str:
    """`3 (set by bantzd parallel; config.toml says 2)`, or `2 (config.toml)`."""
    value, configured, override = info.get("value"), info.get("config"), info.get("override")
    said = f"config.toml says {configured}" if configured is not None else "config.toml is broken"
    if override is not None:
        return f"{value} (set by bantzd parallel; {said})"
    if value is None:
        return f"? ({said})"
    return f"{value} (config.toml)"
