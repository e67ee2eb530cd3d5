"""``calibviz report`` and ``evaluate --report``: the HTML audit report, built the way a person
builds it (the CLI on the demo's two models), parsed, and opened in headless Chromium
(Debian's ``chromium`` driven by Playwright, no browser download). The browser checks skip,
saying why, where Chromium or Playwright is missing."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from calibviz.cli import app
from calibviz.io.types import Problem
from calibviz.report import write_problems, write_reports
from calibviz.results import Results

from .conftest import random_images

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SECTIONS = ["1. Run and provenance", "2. Headline metrics", "3. Dataset reliability histograms",
            "4. Every image and class", "5. Worst cases: reliability diagrams",
            "6. Problems found while reading"]
HOSTILE = ['<script>alert("case")</script>', "<img src=x onerror=alert(1)>", "a&b\"'"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------- the runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The demo's two models evaluated (4 small cases); the first with ``--report``."""
    from calibviz.demo import write_demo_dataset

    root = tmp_path_factory.mktemp("report")
    data = write_demo_dataset(root / "demo", n_cases=4, shape=(16, 14, 10))
    base, other = root / "nnunet", root / "monai"
    first = invoke("evaluate", data.nnunet, data.labels, "--out", base, "--no-figures",
                   "--workers", 1, "--quiet", "--name", "nnU-Net (over-confident)",
                   "--report")
    assert first.exit_code == 0, first.output
    assert f"wrote {base / 'report.html'}" in first.output
    second = invoke("evaluate", data.monai, data.labels, "--postfix", "prob", "--classes",
                    "background=0,liver=1,tumour=2,vessel=3", "--out", other, "--no-figures",
                    "--workers", 1, "--quiet")
    assert second.exit_code == 0, second.output
    return base, other


@pytest.fixture(scope="module")
def compare_report(runs):
    base, other = runs
    out = base.parent / "compare" / "audit.html"
    result = invoke("report", base, "--compare", other, "--out", out, "--title",
                    "Audit: two liver models", "--bootstrap", 2000)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {out}"
    return out


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A run whose case ids, files and messages are markup, with a skipped case."""
    folder = tmp_path_factory.mktemp("hostile") / "run"
    stats = random_images(n_images=3, n_bins=10)
    problems = (Problem(HOSTILE[1], "<b>file</b>.nii.gz", "<i>cannot read</i>",
                        severity="error"),
                Problem(HOSTILE[0], "x.nii.gz", "values <0 clipped", severity="warning"))
    results = Results([HOSTILE[0], HOSTILE[2], "plain"], stats,
                      {"name": "<u>model</u>", "pred_dir": "/data/<pred>", "n_bins": 10},
                      problems, skipped=[HOSTILE[1]])
    write_reports(results, folder)
    write_problems(results.problems, folder)
    return folder


@pytest.fixture(scope="module")
def hostile_report(hostile_run):
    out = hostile_run.parent / "hostile.html"
    result = invoke("report", hostile_run, "--out", out, "--bootstrap", 200, "--worst", 2)
    assert result.exit_code == 0, result.output
    return out


# --------------------------------------------------------------------------- parsing
class Page(HTMLParser):
    """What the checks need from a page: images, headings, links in attributes, the text
    of scripts and styles, and the visible text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images, self.h2, self.attributes, self.code, self.text = [], [], [], [], []
        self._in = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.attributes.extend((tag, k, v or "") for k, v in attrs.items())
        self._in.append(tag)

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        where = self._in[-1] if self._in else ""
        if where in ("script", "style"):
            self.code.append(data)
        else:
            self.text.append(data)
        if where == "h2":
            self.h2.append(data.strip())


def parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return text, page


def check_self_contained(path: Path) -> Page:
    text, page = parse(path)
    assert page.images, "the report has no image"
    for image in page.images:
        assert image.get("alt", "").strip(), f"an image without alt text: {image.get('id')}"
        assert image["src"].startswith("data:image/png;base64,")
    for tag, name, value in page.attributes:
        assert not re.search(r"https?://", value, re.I), f"<{tag} {name}={value[:80]!r}>"
        if name in ("src", "href"):
            assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:80]!r}>"
    code = "".join(page.code)
    assert not re.search(r"https?://|@import|url\((?!data:)", code, re.I)
    assert re.search(r"<th scope=\"col\"", text) and "<caption>" in text
    assert "@media print" in text and "break-inside: avoid" in text
    return page


def test_evaluate_report_writes_a_self_contained_page(runs):
    page = check_self_contained(runs[0] / "report.html")
    assert page.h2 == SECTIONS  # in the order, no comparison without --compare
    text = "".join(page.text)
    assert "nnU-Net (over-confident)" in text  # the run's --name is the title
    assert "Cases evaluated" in text and "No case was skipped." in text
    assert len(page.images) == 1 + 4  # the dataset histograms and the 4 worst cases
    headers = re.findall(r'<th scope="col" class="num">([^<]+?) <span',
                         (runs[0] / "report.html").read_text(encoding="utf-8"))
    assert headers and all(h in ("ECE", "ACE", "MCE", "dCE", "Brier", "Dice") for h in headers)
    assert "Calibration (ECE, ACE, MCE, dCE, Brier)" in " ".join(text.split())


def test_compare_report_holds_the_comparison(compare_report, runs):
    page = check_self_contained(compare_report)
    assert page.h2 == [*SECTIONS, "7. Comparison with other models"]
    text = " ".join(page.text)
    assert "Audit: two liver models" in text
    assert "monai_calibrated vs nnU-Net (over-confident)" in text
    assert "lower ACE" in text or "no evidence of a difference in ACE" in text
    assert len(page.images) == 1 + 4 + 1  # plus the comparison figure


def test_hostile_names_are_text(hostile_report):
    html, page = parse(hostile_report)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "<u>model" not in html and "<b>file" not in html and "<i>cannot" not in html
    text = "".join(page.text)
    for name in HOSTILE:
        assert name in text  # shown as written
    assert "1 case skipped" in text and "<i>cannot read</i>" in text
    assert len(re.findall(r"<script>", html)) == 1  # only the report's own script


# --------------------------------------------------------------------------- errors
def test_not_a_results_folder_is_one_line(tmp_path):
    result = invoke("report", tmp_path)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "error:" in result.output
    assert "not a calibviz results folder" in result.output
    missing = invoke("report", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "is not a folder" in missing.output


def test_a_run_where_every_case_failed_says_so(tmp_path):
    from calibviz.synthetic import make_case, write_label, write_nifti

    for i in range(2):
        labels, probs = make_case((8, 7, 6), 3, seed=i)
        write_label(tmp_path / "labels" / f"c{i}.nii.gz", labels)
        write_nifti(tmp_path / "pred" / f"c{i}.nii.gz", probs[:, :, :, :3].transpose(1, 2, 3, 0))
    run = tmp_path / "run"
    result = invoke("evaluate", tmp_path / "pred", tmp_path / "labels", "--out", run,
                    "--report", "--no-figures", "--workers", 1)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no report.html: no case was evaluated (see problems.csv)" in result.output
    report = invoke("report", run)
    assert report.exit_code == 2 and report.output.count("\n") == 1
    assert "holds a run in which no case was evaluated" in report.output
    assert "problems.csv" in report.output


def test_unreadable_statistics_is_one_line(tmp_path):
    (tmp_path / "stats.npz").write_bytes(b"not an archive")
    result = invoke("report", tmp_path)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "not a readable calibviz stats.npz" in result.output


def test_compare_report_of_one_resample_blanks_the_intervals_missing_their_mean(runs,
                                                                               tmp_path):
    base, other = runs
    out = tmp_path / "one.html"
    result = invoke("report", base, "--compare", other, "--out", out, "--bootstrap", 1)
    assert result.exit_code == 0, result.output  # was: error: 'yerr' must not contain …
    text = out.read_text()
    assert "does not contain the estimate" in text and "only 4 paired image" in text
    assert ">discarded<" in text


def test_bad_compare_folder_is_one_line(runs, tmp_path):
    result = invoke("report", runs[0], "--compare", tmp_path, "--out", tmp_path / "r.html")
    assert result.exit_code == 2 and result.output.startswith("error:")
    assert not (tmp_path / "r.html").exists()


def test_report_out_folder_gets_report_html_and_unwritable_is_one_line(runs, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    result = invoke("report", runs[0], "--out", folder, "--bootstrap", 100, "--worst", 1)
    assert result.exit_code == 0, result.output
    assert (folder / "report.html").is_file() and f"wrote {folder / 'report.html'}" in result.output
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = invoke("report", runs[0], "--out", blocker / "r.html", "--bootstrap", 100)
    assert result.exit_code == 2
    assert f"cannot write the report: {blocker / 'r.html'}: Not a directory" in result.output
    assert ".tmp" not in result.output and "Traceback" not in result.output


def test_open_hands_the_file_to_the_browser(hostile_run, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    out = tmp_path / "opened.html"
    assert invoke("report", hostile_run, "--out", out, "--open", "--worst", 0,
                  "--bootstrap", 100).exit_code == 0
    assert opened == [out.resolve().as_uri()]


# --------------------------------------------------------------------------- size
def _pixels(png: bytes):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


def test_report_figures_are_the_figures_a_user_draws(runs):
    """The report draws its worst cases in one reused case figure and its dataset figure
    laid out as ``evaluate`` lays it out: the same pixels as a case figure built alone and
    saved with ``savefig``, and as the dataset figure ``calibviz plot`` writes."""
    import base64
    import io

    from calibviz.html import figures
    from calibviz.store import load_results
    from calibviz.viz import plot_case
    from calibviz.viz.render import render_dataset_figure

    results = load_results(runs[0])
    picked = [2, 0, 3]
    drawn = figures.case_figures(results, picked, ["x"] * 3)
    for rank, (i, image) in enumerate(zip(picked, drawn, strict=True), start=1):
        figure, _ = plot_case(results.stats[i], title=f"#{rank} {results.cases[i]}")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=figures.CASE_DPI)
        inlined = base64.b64decode(image["src"].split(",", 1)[1])
        assert np.array_equal(_pixels(inlined), _pixels(buffer.getvalue())), results.cases[i]
    assert figures.case_figures(results, [], []) == []

    dataset = figures.dataset_figure(results)
    written = render_dataset_figure(results.stats, runs[0] / "dataset_check.png",
                                    dpi=figures.DATASET_DPI)
    inlined = base64.b64decode(dataset["src"].split(",", 1)[1])
    assert np.array_equal(_pixels(inlined), _pixels(written.read_bytes()))
    assert f"of {len(results)} images" in dataset["alt"]
    written.unlink()


def test_report_of_200_cases_is_under_5_mb(tmp_path):
    folder = tmp_path / "big"
    stats = random_images(n_images=200, n_classes=3, shape=(8, 8, 4), n_bins=20)
    results = Results([f"case_{i:03d}" for i in range(200)], stats, {"n_bins": 20})
    write_reports(results, folder)
    start = time.perf_counter()
    result = invoke("report", folder, "--bootstrap", 2000)
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    size = (folder / "report.html").stat().st_size
    print(f"\n200-case report: {size / 1e6:.2f} MB in {seconds:.1f} s")
    assert size < 5_000_000
    _, page = parse(folder / "report.html")
    assert len(page.images) == 1 + 8  # the worst 8 only


def test_report_of_many_classes_shows_the_worst_sixteen(tmp_path):
    """A 40-class run (TotalSegmentator has 117): the report's figures show the 16 classes
    with the highest mean ACE, and say so, instead of 40-panel figures."""
    from calibviz.viz.selection import MAX_FIGURE_CLASSES, figure_classes

    folder = tmp_path / "many"
    stats = random_images(n_images=3, n_classes=40, shape=(8, 8, 4), n_bins=10)
    results = Results([f"case_{i}" for i in range(3)], stats, {"n_bins": 10})
    write_reports(results, folder)
    result = invoke("report", folder, "--bootstrap", 200, "--worst", 1)
    assert result.exit_code == 0, result.output
    text, page = parse(folder / "report.html")
    shown, _ = figure_classes(results)
    assert len(shown) == MAX_FIGURE_CLASSES
    alt = page.images[0]["alt"]
    assert all(f"{results.class_names[c]}," in alt for c in shown[:-1])
    assert not any(f"{name}," in alt for c, name in enumerate(results.class_names)
                   if c not in shown)
    assert f"shows {MAX_FIGURE_CLASSES} of 40 classes" in " ".join(page.text)


# --------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("Playwright is not installed (pip install playwright); browser checks "
                    "of the HTML report skipped")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium); browser "
                    "checks of the HTML report skipped")
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                  args=CHROMIUM_ARGS)
        except Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} does not start: {error}".splitlines()[0])
        yield chromium
        chromium.close()


def open_page(browser, path: Path):
    """A 1366 × 768 page on ``path`` logging every request, console error and page error."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log = {"requests": [], "errors": [], "dialogs": []}
    page.on("request", lambda request: log["requests"].append(request.url))
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: log["errors"].append(str(error)))
    page.on("dialog", lambda dialog: (log["dialogs"].append(dialog.message), dialog.dismiss()))
    page.goto(path.resolve().as_uri(), wait_until="load")
    return page, log


def check_page(page, log) -> None:
    """Images decode, nothing left the file, no errors, no horizontal scroll at 1366 px."""
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt.length])")
    assert images and all(done and width > 0 and alt for done, width, alt in images)
    outside = [u for u in log["requests"] if not u.startswith(("file://", "data:"))]
    assert not outside, f"requests left the file: {outside[:3]}"
    assert not log["errors"] and not log["dialogs"], log
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366


def column(page, name: str) -> list[str]:
    index = page.eval_on_selector_all(
        "#per-image thead th", f"ths => ths.findIndex(t => t.textContent.trim() === {name!r})")
    assert index >= 0, f"no column {name}"
    return page.eval_on_selector_all(
        "#per-image tbody tr",
        f"rows => rows.filter(r => !r.hidden).map(r => r.cells[{index}].dataset.sort)")


def visible_rows(page) -> int:
    return page.eval_on_selector_all(
        "#per-image tbody tr", "rows => rows.filter(r => r.offsetParent !== null).length")


def test_report_in_chromium(browser, runs, tmp_path):
    page, log = open_page(browser, runs[0] / "report.html")
    check_page(page, log)
    page.screenshot(path=str(tmp_path / "report_first_screen.png"))
    # sorting: ACE ascending on the first click, descending on the second
    before = [float(v) for v in column(page, "ACE")]
    page.get_by_role("button", name="ACE", exact=True).click()
    after = [float(v) for v in column(page, "ACE")]
    assert after == sorted(before) and after != before
    header = page.locator("#per-image thead th", has_text="ACE").first
    assert header.get_attribute("aria-sort") == "ascending"
    page.get_by_role("button", name="ACE", exact=True).click()
    assert [float(v) for v in column(page, "ACE")] == sorted(before, reverse=True)
    page.get_by_role("button", name="case", exact=True).click()
    cases = column(page, "case")
    assert cases == sorted(cases)
    # the worst cases are marked in text, not by colour alone
    marks = column(page, "Worst")
    assert sorted(int(m) for m in marks if m) == sorted([1, 2, 3, 4] * 3)
    # filtering by class, then by case; printing shows every row and hides the box
    page.fill("#filter", "tumour")
    assert set(column(page, "class")) == {"tumour"} and len(column(page, "class")) == 4
    assert page.text_content("#shown") == "4 of 12 rows"
    page.fill("#filter", "liver_001")
    assert set(column(page, "case")) == {"liver_001"} and visible_rows(page) == 3
    page.emulate_media(media="print")
    assert visible_rows(page) == 12 and not page.is_visible("#filter")
    pdf = tmp_path / "report.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.read_bytes()[:5] == b"%PDF-"
    first_page(page, pdf, tmp_path / "report_pdf_page1")
    page.close()


def first_page(page, pdf: Path, stem: Path) -> Path:
    """The printed PDF's first page as PNG (pdftoppm), else a print-media screenshot."""
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile",
                        str(pdf), str(stem)], check=True, timeout=60)
    else:
        page.screenshot(path=f"{stem}.png")
    png = Path(f"{stem}.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    return png


def test_compare_report_in_chromium(browser, compare_report, tmp_path):
    page, log = open_page(browser, compare_report)
    check_page(page, log)
    from calibviz.metrics import METRICS

    assert page.locator("#comparison table.compare tbody tr").count() == len(METRICS) * 4
    page.screenshot(path=str(tmp_path / "compare_first_screen.png"))
    page.emulate_media(media="print")
    page.pdf(path=str(tmp_path / "compare.pdf"), format="A4", print_background=True)
    page.close()


def test_hostile_report_in_chromium(browser, hostile_report):
    page, log = open_page(browser, hostile_report)
    check_page(page, log)  # no alert() ran: the dialogs log is empty
    assert HOSTILE[0] in column(page, "case")
    page.close()


@pytest.mark.parametrize(("settings", "name"), [
    ({"seed": -1}, "seed"), ({"n_bootstrap": 10**8}, "n_bootstrap"),
    ({"confidence": 0.0}, "confidence"),
])
def test_report_settings_are_checked_before_reading(tmp_path, settings, name):
    from calibviz.html import write_report

    with pytest.raises(ValueError, match=name):
        write_report(tmp_path / "missing", None, **settings)


def test_report_never_replaces_a_runs_files_and_refuses_huge_bins(runs, tmp_path):
    before = (runs[0] / "stats.npz").read_bytes()
    for target in (runs[0] / "stats.npz", runs[0] / "per_image.csv"):
        result = invoke("report", runs[0], "--out", target, "--bootstrap", 100)
        assert result.exit_code == 2 and "ending in .html" in result.output
    assert (runs[0] / "stats.npz").read_bytes() == before
    folder = tmp_path / "huge"
    stats = random_images(n_images=2, n_classes=2, shape=(4, 4, 2), n_bins=600)
    write_reports(Results(["a", "b"], stats, {"n_bins": 600}), folder)
    for command in (["report", folder], ["plot", folder]):
        result = invoke(*command)
        assert result.exit_code == 2 and "at most 500 bins" in result.output, result.output
        assert "Traceback" not in result.output


def test_headline_blanks_intervals_of_an_older_summary_that_miss_their_mean(tmp_path):
    from calibviz import Results
    from calibviz.html.context import headline
    from calibviz.report import summary_table

    from .conftest import random_images

    results = Results([f"c{i}" for i in range(6)], random_images(), {})
    table = summary_table(results, n_bootstrap=200)
    wrong = (table.metric == "ece") & (table["class"] == results.class_names[0])
    table.loc[wrong, "ci_low"] = table.loc[wrong, "mean"] + 0.1  # above the mean
    table.loc[wrong, "ci_high"] = table.loc[wrong, "mean"] + 0.2
    table.to_csv(tmp_path / "summary.csv", index=False)
    page = headline(tmp_path, results, n_bootstrap=200, seed=0, confidence=0.95)
    column = [m["key"] for m in page["metrics"]].index("ece")
    first = page["rows"][0]["cells"][column]
    assert first["low"] == "–" and first["high"] == "–"
    kept = page["rows"][1]["cells"][column]
    assert kept["low"] != "–" and float(kept["low"]) <= float(kept["mean"]) <= float(kept["high"])
