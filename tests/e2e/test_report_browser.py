"""The smoke study's Snakemake report in a real browser (headless Chromium through Selenium).

The report (`snakemake --report results/report.html`, as `./run.sh study` makes it) is a React
app with every result embedded as a data: URL. The test opens it like a reader would, by
clicking: the start page must list the findings and link to them, one click on that link must
show the findings page (results/report/summary.html, in a data: iframe) with its answers and
their figures as inline images that decode, every figure of the "Figures" category must show as
an image that decoded (natural size > 0) and is laid out with a non-zero size, the "Findings"
menu item must show the same page, and the page must log no console error, uncaught exception
or failed load on the way. summary.html opened on its own shows its figures too. It saves
screenshots of the start page, the findings and one figure page (under the test's tmp dir; also
copied to $MEMLAB_BROWSER_SHOTS if set) and checks none is blank. Last, `./run.sh study` on the
finished study must end by printing the answers and the page to open.

Skipped where Chromium or its driver is not installed (apt-get install chromium
chromium-driver); under CI (CI=true) that fails the test instead, and .ci/run installs the
packages as root.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from conftest import ROOT, copy_workflow
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.remote.webelement import WebElement

pytestmark = pytest.mark.e2e

SHOTS_ENV = "MEMLAB_BROWSER_SHOTS"
# A 1x1 PNG and a PNG that does not decode (valid header, truncated body).
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQ"
    "GAhKmMIQAAAABJRU5ErkJggg=="
)
BROKEN = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"

# The status of every <img> of a document (in whichever frame it runs): src (cut short),
# whether it has finished (loaded or failed), its decoded and its laid-out size.
IMAGES_JS = """[...document.images].map(i => {
    const r = i.getBoundingClientRect();
    return {src: i.src.slice(0, 60), complete: i.complete, natural: [i.naturalWidth,
            i.naturalHeight], shown: [r.width, r.height]};
})"""


def _click(text: str) -> str:
    """JS: click the report's link (menu item or result row's eye button) labelled text."""
    return f"""(() => {{
        const t = {json.dumps(text)};
        for (const a of document.querySelectorAll('#app a')) {{
            if (a.textContent.trim() === t) {{ a.click(); return true; }}
        }}
        for (const tr of document.querySelectorAll('#app tbody tr')) {{
            if (tr.cells[0] && tr.cells[0].textContent.trim() === t) {{
                tr.querySelector('td:last-child a').click(); return true;
            }}
        }}
        return false;
    }})()"""


MENU_JS = "[...document.querySelectorAll('#app a span')].map(s => s.innerText)"
# JS: back to the main menu through the breadcrumbs' first link (the home icon).
HOME_JS = """(() => { const a = document.querySelector('#app nav ol li:first-child a');
    if (a) a.click(); return !!a; })()"""


def broken_images(page: Browser, frame: WebElement | None = None) -> list[dict]:
    """Every <img> that failed to decode or is laid out with no size (waits for all to end)."""
    page.wait_for("[...document.images].every(i => i.complete)", "images", frame=frame)
    images = page.evaluate(IMAGES_JS, frame=frame)
    return [i for i in images if 0 in i["natural"] or 0 in i["shown"]]


def not_blank(png: Path) -> bool:
    """A screenshot shows something: more than a handful of distinct colours."""
    from PIL import Image

    with Image.open(png) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
    return colours is None or len(colours) > 20


@pytest.fixture(scope="module")
def chromium() -> tuple[str, str]:
    found = find_chromium()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but: {found}")
        pytest.skip(found)
    return found


@pytest.fixture(scope="module")
def report(smoke_report) -> Path:
    """The smoke study's report, built once for the session (conftest.smoke_report)."""
    return smoke_report


# JS: the findings page in the report's iframe: visible headings and list items, and its images.
FINDINGS_JS = """(() => {
    const visible = el => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
        return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'
            && s.display !== 'none' && r.top < innerHeight; };
    const h = [...document.querySelectorAll('h2')].filter(visible).map(e => e.innerText);
    const li = [...document.querySelectorAll('li')].filter(visible).map(e => e.innerText);
    const img = [...document.querySelectorAll('ol.findings img')].map(i => i.naturalWidth);
    return {headings: h, findings: li, inline: img};
    })()"""
IFRAME_JS = """(() => { const f = document.querySelector('#app iframe');
    return !!f && f.src.startsWith('data:text/html') })()"""


def read_findings(page: Browser, seconds: float = 30.0) -> dict:
    """What the report's findings iframe shows (waits for it to load; React may re-mount the
    iframe meanwhile, so a stale one is looked up again)."""
    deadline = time.monotonic() + seconds
    while True:
        page.wait_for(IFRAME_JS, "the findings page's iframe")
        try:
            frame = page.frame("data:text/html")
            page.wait_for("document.readyState === 'complete'", "the findings", frame=frame)
            seen = {"broken": broken_images(page, frame), **page.evaluate(FINDINGS_JS, frame=frame)}
            break
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    seen["iframe_size"] = page.evaluate(
        "(() => { const r = document.querySelector('#app iframe').getBoundingClientRect();"
        " return [r.width, r.height] })()"
    )
    return seen


def visit_report(page: Browser, report: Path, shots: Path | None = None) -> dict:
    """Open the report and click through its findings and figures, as a reader would.
    What was seen: the start page's menu and text, the findings page reached by one click on
    the start page's link (headings, visible items, inline images), figures {path: broken
    <img>s of its page (empty: fine)}, the Findings menu item's page, and the page's problems;
    screenshots into shots."""
    page.goto(report.resolve().as_uri())
    page.wait_for("document.querySelectorAll('#app a').length > 0", "the report's menu")
    seen: dict = {
        "menu": page.evaluate(MENU_JS),
        "text": page.evaluate("document.body.innerText"),
        "figures": {},
    }
    # The start page links to the findings: one click shows them.
    seen["link_top"] = page.evaluate(
        "(() => { const a = document.querySelector('#memlab-findings');"
        " return a ? a.getBoundingClientRect().top : null })()"
    )
    if shots:
        seen["front_shot"] = page.screenshot(shots / "front.png")
    assert page.evaluate("(() => { document.querySelector('#memlab-findings').click(); "
                         "return true })()")  # fmt: skip
    seen["one_click"] = read_findings(page)
    if shots:
        seen["summary_shot"] = page.screenshot(shots / "summary.png")
    assert page.evaluate(HOME_JS), "no link back to the menu"
    # The Figures category (one subcategory, so its results are listed at once).
    figures = page.evaluate("(categories.Figures && Object.values(categories.Figures).flat())")
    seen["category"] = figures
    assert page.evaluate(_click("Figures")), "no Figures menu item"
    for i, path in enumerate(figures or []):
        page.wait_for(f"!!{_click(path)}", f"the row of {path}")
        uri = page.evaluate(f"results[{json.dumps(path)}].data_uri")
        page.wait_for(
            f"[...document.images].some(i => i.src === {json.dumps(uri)})", f"the image of {path}"
        )
        seen["figures"][path] = broken_images(page)
        if shots and i == 0:
            seen["figure_shot"] = page.screenshot(shots / "figure.png")
    # The same page from the menu: Findings, then its row's eye button.
    assert page.evaluate(HOME_JS), "no link back to the menu"
    page.wait_for(f"!!{_click('Findings')}", "the Findings menu item")
    page.wait_for(f"!!{_click('results/report/summary.html')}", "the findings page's row")
    seen["menu_findings"] = read_findings(page)
    seen["problems"] = page.problems()
    return seen


def check_findings(seen: dict) -> None:
    """The findings page as shown: its heading, the first answer with a number, visible
    without scrolling or unfolding anything, and its figures inline, every one decoded."""
    assert min(seen["iframe_size"]) > 100, seen["iframe_size"]
    assert any("memlab: findings" in h for h in seen["headings"]), seen
    assert any(re.search(r"Does the model memorize\? .*\d%", f) for f in seen["findings"]), seen
    assert seen["inline"] and all(w > 0 for w in seen["inline"]), seen["inline"]
    assert not seen["broken"], seen["broken"]


def _copy_shots(*pngs: Path) -> None:
    if os.environ.get(SHOTS_ENV):
        dest = Path(os.environ[SHOTS_ENV])
        dest.mkdir(parents=True, exist_ok=True)
        for png in pngs:
            shutil.copy2(png, dest / png.name)


def test_report_in_a_browser(chromium, report, smoke_study, tmp_path):
    work = smoke_study[0]
    with Browser(chromium) as page:
        seen = visit_report(page, report, tmp_path)
    _copy_shots(seen["front_shot"], seen["figure_shot"], seen["summary_shot"])
    assert {"Workflow", "Figures", "Findings", "Tables"} <= set(seen["menu"])
    assert "memlab asks when a model memorizes" in seen["text"]  # the workflow description
    # The start page: the findings first, their link in the window, the questions answered.
    text = seen["text"]
    assert text.index("Findings") < text.index("memlab asks"), text
    assert "Open the findings page" in text and "Does the model memorize?" in text
    assert seen["link_top"] is not None and 0 <= seen["link_top"] < 900, seen["link_top"]
    # One click from it, and from the menu: the answers beside their figures.
    check_findings(seen["one_click"])
    check_findings(seen["menu_findings"])
    # Every figure the study made is in the report, and every one shows.
    made = sorted(str(p.relative_to(work)) for p in (work / "results/figures").glob("*.png"))
    assert sorted(seen["category"]) == made
    assert all(not broken for broken in seen["figures"].values()), seen["figures"]
    assert seen["problems"] == []
    for shot in (seen["front_shot"], seen["figure_shot"], seen["summary_shot"]):
        assert not_blank(shot), f"{shot} is blank"


def test_the_findings_page_alone_shows_each_answer_beside_its_figure(chromium, smoke_study):
    """summary.html opened as a file: every answer's figure is an inline image that decodes,
    the page loads nothing else, and the answers are the findings file's."""
    work = smoke_study[0]
    answered = [ln for ln in (work / "results/findings.txt").read_text().splitlines()
                if re.match(r"\d+\. ", ln)]  # fmt: skip
    with Browser(chromium) as page:
        page.goto((work / "results/report/summary.html").resolve().as_uri())
        page.wait_for("document.readyState === 'complete'", "the findings page")
        broken = broken_images(page)
        figures = page.evaluate(
            "[...document.querySelectorAll('ol.findings > li')].map(li => "
            "[...li.querySelectorAll('img')].map(i => [i.src.slice(0, 22), i.naturalWidth]))"
        )
        problems = page.problems()
    assert answered and len(figures) == len(answered), (figures, answered)
    assert not broken and problems == [], (broken, problems)
    # In the smoke study every answered question has a figure the study draws beside it.
    assert all(f and f[0] == ["data:image/png;base64,", f[0][1]] and f[0][1] > 0 for f in figures)


def test_checks_catch_broken_images_and_errors(chromium, tmp_path):
    """The checks themselves, on a hand-written page: a broken image (also inside a data:
    iframe), a console.error, an uncaught exception and a missing file."""
    inner = f'<h2>inner</h2><img src="data:image/png;base64,{BROKEN}">'
    page_html = f"""<html><body><h1>x</h1>
    <img id="ok" src="data:image/png;base64,{PIXEL}" width="10" height="10">
    <img id="bad" src="data:image/png;base64,{BROKEN}" width="10" height="10">
    <img id="missing" src="missing.png" width="10" height="10">
    <iframe src="data:text/html;base64,{base64.b64encode(inner.encode()).decode()}"></iframe>
    <script>console.error("boom"); setTimeout(() => {{ throw new Error("late") }}, 0);</script>
    </body></html>"""
    (tmp_path / "bad.html").write_text(page_html)
    with Browser(chromium) as page:
        page.goto((tmp_path / "bad.html").as_uri())
        broken = broken_images(page)
        frame = page.frame("data:text/html")
        page.wait_for("document.readyState === 'complete'", "the iframe", frame=frame)
        in_frame = broken_images(page, frame)
        page.wait_for(
            "new Promise(r => setTimeout(() => r(true), 50))", "the late exception to be thrown"
        )
        problems = page.problems()
    assert len(broken) == 2 and len(in_frame) == 1, (broken, in_frame)
    assert any(p.startswith("console-api: ") and '"boom"' in p for p in problems), problems
    assert any(p.startswith("javascript: ") and "Uncaught Error: late" in p for p in problems)
    assert any(p.startswith("network: ") and "ERR_FILE_NOT_FOUND" in p for p in problems)


def test_a_study_ends_by_printing_its_answers_and_the_page(smoke_study, tmp_path):
    """`./run.sh study` on the finished smoke study (nothing to train): its last lines are the
    numbered answers with intervals, one line each, and the page to open."""
    work = copy_workflow(tmp_path / "work")
    shutil.copytree(smoke_study[0] / "results", work / "results")
    shutil.copytree(smoke_study[0] / ".snakemake", work / ".snakemake", symlinks=True)
    shutil.copy2(ROOT / "run.sh", work / "run.sh")
    env = {**os.environ, "MEMLAB_VENV": str(Path(sys.executable).parents[1])}
    proc = subprocess.run(
        ["./run.sh", "study", "--configfile", "config/smoke.yaml"],
        cwd=work, capture_output=True, text=True, env=env | {"MEMLAB_SKIP_SETUP": "1"}, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("memlab: findings (results/findings.txt):")
    answers = [ln for ln in lines[start:] if re.match(r"\d+\. ", ln)]
    assert answers[0].startswith("1. Does the model memorize? ")
    assert all(
        re.search(r"\[-?\d+\.\d, -?\d+\.\d\]|the same in all \d+ replicas", a) for a in answers
    )
    assert lines[-1].startswith("memlab: open results/report/summary.html")
