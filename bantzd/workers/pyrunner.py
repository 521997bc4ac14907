"""Runs a `python: "pkg.mod:func"` task: `func(ctx, args)` in bantzd's own interpreter.

Started by the supervisor (under the same attempt wrapper as shell tasks) as
`python -m bantzd.workers.pyrunner pkg.mod:func`; the task's `cwd` goes first on sys.path
and `args:` come from task.yaml.
"""

from __future__ import annotations

import importlib
import os
import sys

import yaml

from bantzd.workers.taskapi import context


def main(argv: list[str]) -> int:
    if len(argv) != 1 or ":" not in argv[0]:
        print("usage: python -m bantzd.workers.pyrunner pkg.module:function", file=sys.stderr)
        return 2
    module_name, func_name = argv[0].split(":", 1)
    sys.path.insert(0, os.getcwd())
    ctx = context()
    with open(ctx.dir / "task.yaml", "rb") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    args = doc.get("args") or {}
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        print(f"bantzd: cannot import {module_name}: {e}", file=sys.stderr)
        return 1
    func = getattr(module, func_name, None)
    if not callable(func):
        print(f"bantzd: {module_name} has no function {func_name}", file=sys.stderr)
        return 1
    result = func(ctx, args)
    if result is not None and not ctx.paths.result_json.exists():
        try:
            ctx.result(result)
        except TypeError:
            print(f"bantzd: the return value is not JSON: {result!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
