"""The review loop in a real browser: rate with the keyboard, export, fine-tune, rerun.

Headless Debian Chromium through selenium and Debian's chromedriver; nothing downloads a
browser. ``.ci/run`` installs both.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from bidsqc.cli.run import main as bidsqc
from bidsqc.outputs.columns import QC_COLUMNS
from bidsqc.reports.group import render_group_report
from bidsqc.reports.individual import render_subject_report
from bidsqc.training.cli.finetune import main as finetune

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
#: Script in every place a dataset or a rater can put text; each would set window.pwned.
PAYLOADS = (
    "<script>window.pwned = 1</script>",
    '"><img src=x onerror="window.pwned = 1">',
    "'><svg onload='window.pwned = 1'>",
    "</script><script>window.pwned = 1</script>",
)


@pytest.fixture(scope="module")
def demo_out(demo_dir, tmp_path_factory) -> Path:
    """The demo through both levels, in a folder of this module's own."""
    out = tmp_path_factory.mktemp("review") / "out"
    assert bidsqc([str(demo_dir), str(out), "participant", "--nprocs", "2"]) == 0
    assert bidsqc([str(demo_dir), str(out), "group"]) == 0
    return out


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    yield driver
    driver.quit()


def open_page(driver, path: Path) -> None:
    driver.get(path.as_uri())
    driver.get_log("browser")  # start each page with an empty log
    driver.get(path.as_uri())


def press(driver, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def click(driver, element) -> None:
    """Click an element in the middle of the window, clear of the sticky rating panel."""
    driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'})", element
    )
    element.click()


def severe_messages(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)
    return result


def test_every_report_loads_without_a_console_error(demo_out, browser):
    pages = sorted(demo_out.glob("*.html")) + [demo_out / "logs" / "CITATION.html"]
    assert len(pages) == 5
    for page in pages:
        open_page(browser, page)
        if page.name.startswith("sub-"):  # the first viewer decodes its volume
            wait_for(lambda: browser.find_elements("css selector", ".viewer[data-ready]"))
        assert severe_messages(browser) == [], page.name


def test_keyboard_ratings_survive_a_reload_and_export_to_finetune(
    demo_out, browser, downloads, tmp_path
):
    open_page(browser, demo_out / "sub-01.html")
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    browser.find_element("id", "rater").send_keys("Ada")
    browser.find_element("tag name", "body").click()
    press(browser, "j1jj3m")  # first image usable; third unusable, with motion
    browser.refresh()
    summaries = [
        element.text
        for element in browser.find_elements("css selector", "section [data-rating-summary]")
    ]
    assert summaries == ["usable", "", "unusable: motion"]
    assert browser.find_element("id", "rated-count").text == "2"

    open_page(browser, demo_out / "group_T1w.html")
    browser.find_element("id", "queue-filter").send_keys("sub-02")
    browser.find_element("tag name", "body").click()
    press(browser, "j2n")  # the group queue rates with the same keys
    rows = browser.find_elements("css selector", "#queue tbody tr")
    assert [row.find_element("css selector", "[data-rating-summary]").text for row in rows] == [
        "questionable: noise"
    ]
    press(browser, "e")
    export = wait_for(lambda: next(downloads.glob("bidsqc_ratings*.tsv"), None))
    time.sleep(0.5)
    table = pd.read_csv(export, sep="\t", keep_default_na=False)
    assert table["filename"].tolist() == [
        "sub-01/anat/sub-01_run-1_T1w.nii.gz",
        "sub-01/anat/sub-01_run-3_T1w.nii.gz",
        "sub-02/anat/sub-02_T1w.nii.gz",
    ]
    assert table["rating"].tolist() == ["usable", "unusable", "questionable"]
    assert table["artefacts"].tolist() == ["", "motion", "noise"]
    assert set(table["rater"]) == {"Ada"}
    assert {"decision", "motion_mm", "p_misregistered", "quality_score"} <= set(table.columns)

    models = tmp_path / "models"
    argv = [
        "--labels",
        str(export),
        "--qc-dir",
        str(demo_out),
        "--task",
        "motion",
        "--method",
        "embedding",
        "--out",
        str(models),
        "--folds",
        "2",
        "--scratch-epochs",
        "0",
        "--no-progress",
    ]
    assert finetune(argv) == 0
    card = json.loads((models / "motion.json").read_text())
    assert card["labels"]["format"] == "bidsqc ratings TSV"
    assert card["labels"]["images"] == 3
    quality = [*argv[:5], "quality", *argv[6:]]
    assert finetune(quality) == 0
    assert json.loads((models / "quality.json").read_text())["classes"] == [
        "usable",
        "questionable",
        "unusable",
    ]
    shutil.copytree(models, demo_out.parent / "models")


def test_group_queue_sorts_and_filters(demo_out, browser):
    open_page(browser, demo_out / "group_T1w.html")

    def names():
        return [
            row.find_element("css selector", "a").text
            for row in browser.find_elements("css selector", "#queue tbody tr")
        ]

    assert len(names()) == 4
    header = browser.find_element("css selector", '#queue th[data-key="name"] button')
    click(browser, header)
    assert names() == sorted(names())
    click(browser, header)
    assert names() == sorted(names(), reverse=True)
    browser.find_element("id", "queue-filter").send_keys("run-2")
    assert names() == ["sub-01_run-2_T1w.nii.gz"]
    browser.find_element("id", "queue-filter").clear()
    browser.find_element("id", "queue-filter").send_keys(" ")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "queue-decision")).select_by_visible_text("pass")
    decisions = pd.read_csv(demo_out / "group_T1w.tsv", sep="\t")
    assert len(names()) == (decisions["decision"] == "pass").sum()
    assert severe_messages(browser) == []


def test_script_in_file_names_and_values_does_not_run(browser, tmp_path):
    rows = []
    for i, payload in enumerate(PAYLOADS, start=1):
        filename = f"sub-{i:02d}/anat/sub-{i:02d}_acq-{payload}_T1w.nii.gz"
        row = {column: float("nan") for column in QC_COLUMNS}
        row.update(
            filename=filename,
            participant_id=f"sub-{i:02d}{payload}",
            session_id=payload,
            modality="T1w",
            status="failed",
            error=payload,
            dataset="raw",
            decision="fail",
            reasons=payload,
        )
        rows.append(row)
    subject = render_subject_report(
        "sub-01" + PAYLOADS[0],
        rows,
        {},
        QC_COLUMNS,
        tmp_path / "sub-01.html",
        generated_by=PAYLOADS[1],
        dataset=PAYLOADS[3],
        models={
            rows[0]["filename"]: [
                {
                    "output": PAYLOADS[2],
                    "weights": PAYLOADS[0],
                    "sha256": PAYLOADS[1],
                    "fine_tuned": PAYLOADS[3],
                    "card": PAYLOADS[2],
                }
            ]
        },
    )
    group = render_group_report(
        pd.DataFrame(rows),
        "T1w",
        QC_COLUMNS,
        tmp_path / "group_T1w.html",
        generated_by=PAYLOADS[1],
        dataset=PAYLOADS[3],
    )
    for page in (subject, group):
        open_page(browser, page)
        browser.find_element("tag name", "body").click()
        press(browser, "j1m")
        comment = browser.find_element("css selector", "[data-comment]")
        comment.send_keys(PAYLOADS[1])
        browser.refresh()
        time.sleep(0.3)
        assert browser.execute_script("return window.pwned") is None, page.name
        assert PAYLOADS[0] in browser.find_element("tag name", "body").text


def test_participant_rerun_with_fine_tuned_models_runs_only_the_networks(demo_dir, demo_out):
    models = demo_out.parent / "models"
    if not (models / "motion.pt").exists():
        pytest.skip("needs the models of the export test")
    registered = sorted((demo_out / "work").rglob("register/result_register.pklz"))
    stamps = [path.stat().st_mtime_ns for path in registered]
    argv = [str(demo_dir), str(demo_out), "participant", "--models-dir", str(models)]
    assert bidsqc(argv) == 0
    assert [path.stat().st_mtime_ns for path in registered] == stamps
    motion = json.loads(
        (demo_out / "sub-01" / "anat" / "sub-01_run-1_desc-motion_T1w.json").read_text()
    )
    assert motion["model"]["fine_tuned"] == "embedding"
    assert motion["model"]["weights"] == str(models / "motion.pt")
    artefacts = json.loads(
        (demo_out / "sub-01" / "anat" / "sub-01_run-1_desc-artefacts_T1w.json").read_text()
    )
    assert artefacts["model"]["fine_tuned"] is None
    table = pd.read_csv(demo_out / "sub-01" / "sub-01_qc.tsv", sep="\t")
    assert set(table["site_rating"]) <= {0, 1, 2}
    assert (table[["p_usable", "p_questionable", "p_unusable"]].sum(axis=1) - 1).abs().max() < 1e-4
    html = (demo_out / "sub-01.html").read_text()
    assert "motion by <a" in html and "fine-tuned (embedding)" in html
    assert "site quality by <a" in html
    assert "fine-tuned" in (demo_out / "logs" / "CITATION.md").read_text()

    # The same networks in this process, on the preprocessed images alone: same answers.
    work = {path: path.stat().st_mtime_ns for path in (demo_out / "work").rglob("*.pklz")}
    assert bidsqc([*argv, "--inference-only"]) == 0
    again = json.loads(
        (demo_out / "sub-01" / "anat" / "sub-01_run-1_desc-motion_T1w.json").read_text()
    )
    for column in ("p_motion_none", "p_motion_mild", "p_motion_severe", "motion_mm"):
        assert again[column] == pytest.approx(motion[column], abs=1e-4)
    assert {path: path.stat().st_mtime_ns for path in work} == work
    assert pd.read_csv(demo_out / "sub-01" / "sub-01_qc.tsv", sep="\t")["site_rating"].notna().all()
    assert bidsqc([str(demo_dir), str(demo_out), "group"]) == 0
    group = (demo_out / "group_T1w.html").read_text()
    assert (
        "(motion, fine-tuned: embedding)" in group and "(quality, fine-tuned: embedding)" in group
    )
    card = f"logs/models/motion-{motion['model']['sha256'][:12]}.json"
    assert (demo_out / card).is_file() and card in html
