"""The report in a real headless Chromium: it loads without console messages, every plot
renders with a size and drawn lines, and a screenshot is written.

Chromium comes from Debian's packages (``apt-get install chromium``); ``.ci/run``
installs it. Without it the test skips here, but fails where ``CI`` (or
``FEDHIVE_REQUIRE_CHROMIUM``) is set, so a CI whose install broke cannot pass silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fedhive.cli.main import main
from report_runs import full_records, png_size, record, write_run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# Appended to a copy of the page (the report itself has no script): measures each plot
# as laid out and writes the figures where --dump-dom shows them.
PROBE = """<script>
const plots = [...document.querySelectorAll("svg.plot")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const lines = [...svg.querySelectorAll("polyline")];
  return {id: svg.id, width: box.width, height: box.height, lines: lines.length,
          drawn: lines.filter((l) => l.getBBox().width > 0).length};
});
const probe = document.createElement("pre");
probe.id = "probe";
probe.textContent = JSON.stringify(plots);
document.body.append(probe);
</script>"""

CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] (.*)")


def browser() -> str:
    """The Chromium binary, or a skip (a failure under CI) naming what to install."""
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is not None:
        return found
    reason = "no chromium on PATH: apt-get install -y --no-install-recommends chromium"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"} or os.environ.get(
        "FEDHIVE_REQUIRE_CHROMIUM"
    ):
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def chromium(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with a throwaway profile; console output on stderr."""
    command = [
        browser(),
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def console_messages(stderr: str) -> list[str]:
    return [match.group(1) for match in CONSOLE.finditer(stderr)]


def test_the_console_check_catches_a_script_error(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>throw new Error("boom-7")</script>')
    run = chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("boom-7" in message for message in console_messages(run.stderr))


def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    dp = write_run(tmp_path / "dp", full_records(4), config={"run": {"rounds": 4}})
    plain = write_run(
        tmp_path / "plain", [record(r, accuracy=0.2 * r, loss=1.0) for r in (1, 2, 3)]
    )
    page = tmp_path / "report.html"
    assert main(["report", str(dp), str(plain), "--out", str(page)]) == 0
    expected = page.read_text(encoding="utf-8").count('<svg class="plot"')
    assert expected == 8

    loaded = chromium(page, tmp_path / "p1", "--dump-dom", "--virtual-time-budget=2000")
    assert console_messages(loaded.stderr) == []
    assert loaded.stdout.count('<svg class="plot"') == expected

    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    run = chromium(probed, tmp_path / "p2", "--dump-dom", "--virtual-time-budget=2000")
    assert console_messages(run.stderr) == []
    match = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.DOTALL)
    assert match is not None, "the probe did not run"
    plots = json.loads(match.group(1))
    assert len(plots) == expected
    for plot in plots:
        assert plot["width"] > 0, plot
        assert plot["height"] > 0, plot
        assert plot["lines"] > 0, plot
        assert plot["drawn"] == plot["lines"], plot

    shot = tmp_path / "shot.png"
    chromium(page, tmp_path / "p3", f"--screenshot={shot}", "--window-size=1280,2400")
    assert png_size(shot) == (1280, 2400)
