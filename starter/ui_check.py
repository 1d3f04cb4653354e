"""`make ui-check`: the Temporal UI as an operator sees it, checked in headless Chromium.

Not part of `make test` (it needs Debian's `chromium`). It starts the local stack (`rop
stack`, as `make run` does) in a data folder of its own, drives the demo pathway a few steps
with the `rop` CLI, then loads the workflow list and the pathway's page in headless
Chromium, saves a screenshot of each and fails unless

- the pathway is on the list, and its decoded summary ("ROP pathway for referral ...") on its
  page: the codec server decoded it for the UI, with no token, in local mode;
- its current details (phase, what is due next) are on the pathway's page;
- no codec error ("Codec Server could not connect") and no ciphertext encoding is shown.

Chromium is driven with Playwright (the `ui` extra), pointed at Debian's browser: nothing is
downloaded. The demo referral is synthetic; the screenshots show its pseudonymous ids only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

VENV_BIN = Path(sys.executable).parent
UI = "http://localhost:8233"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1200",
)
CODEC_ERRORS = ("Codec Server could not connect", "binary/encrypted")


@dataclass(frozen=True)
class PageCheck:
    name: str
    url: str
    must_show: tuple[str, ...]
    tab: str | None = None
    """A tab of the page to open first (the summary and details are under "User Metadata")."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".ui-check"), help="screenshots here")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        raise SystemExit("error: Debian's chromium is needed: apt-get install chromium")
    sys.exit(run(args.out.resolve(), args.chromium))


def run(out: Path, chromium: str) -> int:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "ROP_DATA_DIR": str(out / "stack"), "ROP_LOG_FORMAT": "json"}
    env.pop("DATABASE_URL", None)
    log = (out / "stack.log").open("w", encoding="utf-8")
    stack = subprocess.Popen(
        [str(VENV_BIN / "rop"), "stack"], env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        workflow_id = _wait_for_demo(stack)
        _drive_demo(workflow_id, env)
        time.sleep(3)  # visibility and the UI catch up
        detail_page = f"{UI}/namespaces/default/workflows/{workflow_id}"
        checks = [
            # The list's default columns have no summary: the pathway must be listed.
            PageCheck("workflow-list", f"{UI}/namespaces/default/workflows", (workflow_id,)),
            PageCheck(
                "pathway",
                detail_page,
                ("remind: invite to avklaringsmøte",),  # a named timer, on the timeline
            ),
            PageCheck(
                "pathway-metadata",
                detail_page,
                ("ROP pathway for referral", "Phase: meeting-invited"),
                tab="User Metadata",
            ),
        ]
        failures = [f for check in checks for f in _check_page(check, chromium, out)]
    finally:
        stack.send_signal(signal.SIGINT)
        try:
            stack.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.kill()
        log.close()
    for failure in failures:
        print(f"FAIL {failure}")
    print("ui-check: " + ("passed" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


def _wait_for_demo(stack: subprocess.Popen[str], timeout: float = 180) -> str:
    """The demo pathway's id, once the stack prints its welcome."""
    assert stack.stdout is not None
    deadline = time.monotonic() + timeout
    for line in stack.stdout:
        print(line, end="")
        found = re.search(r"Demo pathway:\s+(\S+)", line)
        if found:
            return found.group(1)
        if time.monotonic() > deadline:
            break
    raise SystemExit(f"error: the stack did not start (exit {stack.poll()}); see its log")


def _drive_demo(workflow_id: str, env: dict[str, str]) -> None:
    rop = str(VENV_BIN / "rop")
    meeting = time.strftime("%Y-%m-%dT%H:%M:00+00:00", time.gmtime(time.time() + 3600))
    for step in (
        ["assess", workflow_id, "--assessor", "9000123", "--decision", "in-target-group",
         "--reason", "ROP-problematikk"],
        ["invite", workflow_id, "--by", "9000123", "--at", meeting, "--location",
         "DPS, møterom 2", "--recommended"],
    ):  # fmt: skip
        done = subprocess.run([rop, *step], env=env, capture_output=True, text=True, check=False)
        print(f"rop {step[0]}: exit {done.returncode}")
        if done.returncode != 0:
            raise SystemExit(f"error: rop {step[0]} failed: {done.stderr.strip()}")


def _check_page(check: PageCheck, chromium: str, out: Path) -> list[str]:
    """Load the page in headless Chromium (driven by Playwright), wait until what it must
    show is there or 30 s have passed, screenshot it; what is wrong."""
    from playwright.sync_api import sync_playwright

    failures: list[str] = []
    screenshot = out / f"{check.name}.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_FLAGS[1:]), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            page.goto(check.url, wait_until="domcontentloaded")
            if check.tab is not None:
                page.get_by_text(check.tab, exact=True).first.click(timeout=30_000)
            missing = list(check.must_show)
            for _ in range(60):
                shown = _text_of_every_frame(page)
                missing = [wanted for wanted in check.must_show if wanted not in shown]
                if not missing:
                    break
                page.wait_for_timeout(500)
            failures += [f"{check.name}: {wanted!r} not on the page" for wanted in missing]
            page.screenshot(path=str(screenshot), full_page=True)
            dom = page.content() + _text_of_every_frame(page)
        finally:
            browser.close()
    (out / f"{check.name}.html").write_text(dom, encoding="utf-8")
    failures += [f"{check.name}: {error!r} on the page" for error in CODEC_ERRORS if error in dom]
    print(f"{check.name}: {check.url} -> {screenshot}")
    return failures


def _text_of_every_frame(page: Page) -> str:
    """The text a person sees: the UI renders summaries and details (Markdown) in frames."""
    from playwright.sync_api import Error as PlaywrightError

    texts: list[str] = []
    for frame in page.frames:
        with contextlib.suppress(PlaywrightError):  # a frame may go while it is read
            texts.append(frame.evaluate("document.body ? document.body.innerText : ''"))
    return "\n".join(texts)


if __name__ == "__main__":
    main()
