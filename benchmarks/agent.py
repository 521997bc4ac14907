"""What bantzd's `agent:` worker adds to each step over a bare tool-calling loop.

    python benchmarks/agent.py [--steps 60]

Both loops run in this process against tests/agent_server.py (answers at once) and make the
same calls: each turn the model asks for `list`, the loop lists the folder and sends the
result back, until `--steps` turns. So what is measured is the client side per step:

- bare: the openai client, the messages kept in a list, the tool run inline;
- bantzd: the agent worker's loop (AgentTask): the reply and the result appended and fsynced
  to the journal, progress.json, agent.json and transcript.md rewritten, tokens.json.

Prints the mean milliseconds per step of each and the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.agent_server import ScriptedLLM, calls, text  # noqa: E402

GOAL = "List the folder again and again [script:bench]"


def bare(server: ScriptedLLM, folder: Path, steps: int) -> float:
    import openai

    from bantzd.workers.agenttools import Toolbox

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    tools = Toolbox(["read"], cwd=folder, work=folder).schemas()
    messages: list[dict] = [{"role": "system", "content": "s"}, {"role": "user", "content": GOAL}]
    start = time.perf_counter()
    for _ in range(steps):
        reply = client.chat.completions.create(model="local", messages=messages, tools=tools)
        message = reply.choices[0].message
        if not message.tool_calls:
            break
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            listing = "\n".join(sorted(os.listdir(folder)))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": listing})
    return (time.perf_counter() - start) / steps * 1000


def with_bantzd(server: ScriptedLLM, folder: Path, task_dir: Path, steps: int) -> float:
    from bantzd.workers.agent import AgentTask
    from bantzd.workers.agenttools import Toolbox
    from bantzd.workers.llmtask import make_caller
    from bantzd.workers.taskapi import Context

    task_dir.mkdir()
    ctx = Context(task_dir, task_id=1, attempt=1)
    llm = SimpleNamespace(
        base_url=server.base_url, model="local", fallback_models=(), api_key_env="", timeout=30
    )
    caller, _ = make_caller(ctx, llm, model=None, uses={}, on_notice=lambda t: None)
    spec = {"goal": GOAL, "tools": ("read",), "max_steps": steps + 1}
    task = AgentTask(ctx, spec, caller, Toolbox(["read"], cwd=folder, work=task_dir / "work"))
    start = time.perf_counter()
    task.run()
    return (time.perf_counter() - start) / (steps + 1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    server = ScriptedLLM()
    server.scripts["bench"] = [calls(("list", {}))] * args.steps + [text("done")]
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "folder"
            folder.mkdir()
            for i in range(20):
                (folder / f"note{i}.md").write_text("x")
            bare_ms = bare(server, folder, args.steps)
            agent_ms = with_bantzd(server, folder, Path(tmp) / "task", args.steps)
    finally:
        server.stop()
    print(json.dumps({"steps": args.steps, "bare_ms_per_step": round(bare_ms, 2),
                      "bantzd_ms_per_step": round(agent_ms, 2),
                      "overhead_ms_per_step": round(agent_ms - bare_ms, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
