"""The HTML report in a real browser: headless Chromium loads the index and a task page, and every figure must
have loaded (naturalWidth > 0) with no error logged by the page.

Chromium is Debian's `chromium` package (.ci/run installs it). Without it these tests skip, unless
TESTBED_REQUIRE_CHROMIUM=1 (set by .ci/run when it installed chromium) turns its absence into a failure.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.cli import main
from analysis.synthetic import law_table

LOSS = {
    "synth_a": {"alpha": 150.0, "beta": 300.0, "e": -0.25, "E": 1.7},
    "synth_b": {"alpha": 120.0, "beta": 350.0, "e": -0.27, "E": 1.9},
}
ERROR = {"epsilon": 0.75, "k": 3.0, "gamma": 0.6}

# Injected first into a copy of the page: records load errors of any element (captured: images do not bubble),
# uncaught exceptions and console.error, then, once everything has loaded, writes what it found into the DOM.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => {
  __errors.push(e.message || ("failed to load " + ((e.target && (e.target.src || e.target.href)) || "?")));
}, true);
const __consoleError = console.error;
console.error = (...args) => { __errors.push(args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const bad = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "__probe";
  out.textContent = JSON.stringify({images: images.length, bad: bad, errors: __errors});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("TESTBED_REQUIRE_CHROMIUM") == "1":
        pytest.fail("TESTBED_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def probe(page: Path) -> dict:
    """Load `page` (a copy with PROBE injected, beside it so relative links resolve) in headless Chromium;
    returns {"images": n, "bad": [src...], "errors": [message...]}."""
    browser = chromium()
    text = page.read_text()
    copy = page.with_name(f"_probe_{page.name}")
    copy.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    try:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--allow-file-access-from-files", "--virtual-time-budget=20000", "--dump-dom", copy.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        copy.unlink()
    found = re.search(r'<pre id="__probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not report (chromium exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("results") / "results.parquet"
    table = law_table(LOSS, ERROR, noise=0.001)
    table["sweep"] = "browser_check"
    table.to_parquet(path)
    out = tmp_path_factory.mktemp("report") / "report"
    with contextlib.redirect_stdout(io.StringIO()):
        argv = ["report", str(path), "--out", str(out), "--bootstrap", "20", "--classify-bootstrap", "10"]
        assert main(argv) == 0
    return out / "index.html"


def test_every_figure_of_the_index_loads_without_errors(report):
    seen = probe(report)
    assert seen["images"] == 2 and seen["bad"] == [] and seen["errors"] == []


def test_every_task_page_loads_its_figure_without_errors(report):
    pages = sorted((report.parent / "tasks").glob("*.html"))
    assert [p.name for p in pages] == ["task_a.html", "task_b.html"]
    for page in pages:
        seen = probe(page)
        assert seen["images"] == 1 and seen["bad"] == [] and seen["errors"] == [], page.name


def test_the_probe_sees_a_missing_figure_and_a_script_error(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<!doctype html><html><head></head><body><img src='missing.png'><img src='also.png'>"
                    "<script>undefined_function()</script></body></html>")  # fmt: skip
    seen = probe(page)
    assert seen["bad"] == ["missing.png", "also.png"]
    assert any("undefined_function" in e for e in seen["errors"]) and any("missing.png" in e for e in seen["errors"])


def test_the_header_says_what_was_run(report):
    text = report.read_text()
    assert "Sweep: browser_check" in text and "results.parquet" in text
    for package in ("testbed", "numpy", "scipy", "pandas", "matplotlib"):
        assert re.search(rf"{package} \d", text), package
    assert text.count("<figcaption>") == 2
