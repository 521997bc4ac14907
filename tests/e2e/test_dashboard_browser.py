"""The dashboard in a real browser (Debian's Chromium, driven by Selenium), against a real
supervisor and a real `bantzd serve`: the story of SPEC 14 from a person's chair.

One test: open the printed link; see a running task's progress move without reloading;
answer a question with its button and see the task resume and finish; approve a held task
and see it run; open the morning report and see its Mermaid timeline drawn. Screenshots are
kept as artifacts (their paths are printed). The browser's console must stay free of
errors (a Content-Security-Policy violation would show there).
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from tests.conftest import Bantz, wait_for
from tests.dashboard import artifacts_dir, chromium, start_serve

pytestmark = pytest.mark.slow

# Progress every 0.3 s until the test says stop (a file), 90 s at most.
PROGRESS = textwrap.dedent("""\
    name: train-long
    run:
      - {python}
      - -c
      - |
        import os, time
        from bantzd.worker import context
        ctx = context()
        stop = os.path.join(os.environ["BANTZ_TASK_DIR"], "stop-now")
        for i in range(300):
            if os.path.exists(stop):
                break
            ctx.progress((i % 100) / 100, f"epoch {{i // 10 + 1}}, batch {{i % 10}}")
            print(f"batch {{i}} loss {{1 / (i + 1):.4f}}", flush=True)
            time.sleep(0.3)
""")

ASK = textwrap.dedent("""\
    name: publish-model
    env: {{PYTHON: {python}}}
    run: |
      answer=$("$PYTHON" -m bantzd ask publish "Upload the model to the hub?" \\
        --choice yes --choice no)
      echo "resumed with answer: $answer"
""")

HELD = textwrap.dedent("""\
    name: deploy-config
    approval: true
    run: echo deployed-after-approval
""")


def test_the_night_in_a_browser(bantz: Bantz) -> None:
    python = json.dumps(sys.executable)
    bantz.drop("10-train.yaml", PROGRESS.format(python=python))
    bantz.drop("20-ask.yaml", ASK.format(python=python))
    bantz.drop("30-held.yaml", HELD)
    bantz.start("run", stderr=bantz.home / "run.err")
    wait_for(lambda: bantz.status_of(2) == "waiting_human", 30, what="task 2 to ask")
    wait_for(lambda: bantz.status_of(3) == "held", 30, what="task 3 to be held")
    wait_for(lambda: (bantz.state(1).get("progress") or {}).get("percent"), 30, what="progress")

    served = start_serve(bantz.home, bantz.env)
    driver = chromium()
    shots = artifacts_dir()
    try:
        from selenium.webdriver.common.by import By

        # Read in one script call: the page swaps fragments under us while we look.
        def text_of(css: str) -> str:
            return driver.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                css,
            )

        driver.get(served.url)
        # The token went into a cookie and out of the address bar.
        wait_for(lambda: "token=" not in driver.current_url, 10, what="the redirect")
        assert driver.title.startswith("The night")
        wait_for(lambda: "train-long" in text_of("#running"), 15, what="the running task")

        # Progress moves on the page by itself (server-sent events), no reload.
        def progress_value() -> str:
            return driver.execute_script(
                "const e = document.querySelector('#r-1 progress');"
                "return e ? e.getAttribute('value') : '';"
            )

        first = wait_for(progress_value, 10, what="a progress bar")
        first_text = text_of("#r-1 .progress-text")
        wait_for(lambda: progress_value() not in ("", first), 15, what="the progress to move")
        assert text_of("#r-1 .progress-text") != first_text

        # What waits for the person, with its buttons; the load chart is drawn.
        needs = text_of("#needs")
        assert "Upload the model to the hub?" in needs and "deploy-config" in needs
        assert "echo deployed-after-approval" in needs
        assert driver.find_elements(By.CSS_SELECTOR, "#chart svg, #chart p")
        shot = shots / "dashboard-night.png"
        driver.save_screenshot(str(shot))
        print(f"\nscreenshot: {shot}")

        # Answer with the button: the task resumes and finishes with that answer.
        driver.find_element(By.CSS_SELECTOR, '#q-2 button[value="yes"]').click()
        wait_for(lambda: text_of(".flash.ok"), 15, what="the reply on the page")
        wait_for(lambda: bantz.status_of(2) == "done", 30, what="task 2 to resume and finish")
        assert "resumed with answer: yes" in bantz.output(2)
        wait_for(lambda: "#2" not in text_of("#needs"), 10, what="the question to go")

        # Approve the held task: it runs.
        driver.find_element(By.CSS_SELECTOR, "#h-3 button.approve").click()
        wait_for(lambda: bantz.status_of(3) == "done", 30, what="task 3 to run once approved")
        assert "deployed-after-approval" in bantz.output(3)

        # The task page follows the task live: its log tail and its state.
        driver.get(f"{served.base}/tasks/2")
        wait_for(lambda: "resumed with answer: yes" in text_of("#log"), 10, what="task 2's log")
        assert "done" in text_of("#state h2")

        # The morning report, with its Mermaid timeline drawn in the page.
        bantz("report", check=True)
        driver.get(f"{served.base}/reports")
        driver.find_element(By.CSS_SELECTOR, "ul.reports a").click()
        wait_for(
            lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-mermaid"),
            20,
            what="Mermaid to draw the timeline",
        )
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-mermaid") == "drawn"
        assert driver.find_elements(By.CSS_SELECTOR, "pre.mermaid svg")
        shot = shots / "dashboard-report.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")

        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        (bantz.task_dir(1) / "stop-now").touch()
        driver.quit()
        served.stop()
