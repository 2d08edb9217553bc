"""MLflow's own UI as the review queue, in a real headless Chromium: the anomalies experiment's page
lists the flagged anomalies, and one anomaly's page shows its asset, its verdict and its plot.

The browser is Debian's ``chromium`` with its matching ``chromium-driver`` (``make test`` installs
both when they are missing), driven by Selenium. Each page's screenshot is saved; with
``SENSORWATCH_SCREENSHOTS=folder`` it is also copied there (the README's pictures come from here).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import PLANT, TRAIN_READINGS
from mlflow_server import MlflowServer

from sensorwatch.models.mlflow_store import Store
from sensorwatch.models.register import log_training
from sensorwatch.models.registry import load_detector
from sensorwatch.pipeline.dev.simulator import CHANNELS, Simulator
from sensorwatch.pipeline.review.sink import ReviewSink
from sensorwatch.pipeline.review.verdicts import Reviews
from sensorwatch.pipeline.stream.processor import Processor
from sensorwatch.pipeline.stream.step import StepOutput
from sensorwatch.schemas.records import Reading

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
EXPERIMENT = "sensorwatch-anomalies"
# In CI, and as root (where make test installs the browser), a missing browser fails these tests:
# elsewhere they are skipped.
BROWSER_REQUIRED = os.environ.get("CI", "").lower() in ("true", "1") or os.geteuid() == 0
MISSING = "no chromium and chromedriver (make browser installs them, as root, with apt-get)"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (CHROMIUM and DRIVER) and not BROWSER_REQUIRED, reason=MISSING),
]


@pytest.fixture(scope="session", autouse=True)  # session: before the session's server and model
def browser_installed() -> None:
    """Fail at once, before the server and the anomalies are set up, where the browser must be."""
    if not (CHROMIUM and DRIVER):
        pytest.fail(f"{MISSING}; CI and root runs must run the browser tests", pytrace=False)


@pytest.fixture(scope="module")
def reviewed(mlflow_server: MlflowServer, champion):
    """The session's tracking server holding the anomalies the champion flags on the simulated
    plant, logged by the service's review sink: the server and the review queue."""
    server = mlflow_server
    store = Store(server.uri, model_name="pumps", timeout_s=10, retries=1)
    log_training(champion.trained, store, alias="champion")
    processor = Processor(load_detector(store, "champion"))
    sink = ReviewSink(store, processor, experiment=EXPERIMENT, ui_url=server.uri, drain_s=120)
    sim = Simulator(**PLANT)
    sim.normal(TRAIN_READINGS)
    frame, _ = sim.with_faults(900, faults_per_asset=1, kinds=("spike", "level_shift"))
    frame["ts_ms"] += int(time.time() * 1000) - 3_600_000 - int(frame["ts_ms"].min())
    values = frame[CHANNELS].to_numpy(float).tolist()
    readings = [
        Reading(a, int(t), dict(zip(CHANNELS, row)))
        for a, t, row in zip(frame["asset_id"], frame["ts_ms"], values)
    ]
    for decisions in (processor.process(readings), processor.flush()):
        sink.write(StepOutput(polled=0, decisions=decisions))
    sink.close()
    assert sink.logged >= 2 and sink.dropped == 0
    return server, Reviews(store, EXPERIMENT, server.uri)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1500,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _page_text_with(driver, needles: list[str], timeout_s: float = 60) -> str:
    """The page's visible text once it holds every one of ``needles`` (the UI renders after loading)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def text() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.5).until(
            lambda _: all(n in text() for n in needles)
        )
    except TimeoutException:
        missing = [n for n in needles if n not in text()]
        raise AssertionError(
            f"{driver.current_url} never showed {missing}; it shows:\n{text()[:3000]}"
        ) from None
    return text()


def _screenshot(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("SENSORWATCH_SCREENSHOTS"):
        folder = Path(os.environ["SENSORWATCH_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    return path


def _tidy(driver) -> None:
    """Close MLflow's assistant panel, if it opened, and unfold each day's parent run."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
    for button in driver.find_elements(
        By.CSS_SELECTOR, "button[data-component-id$='runnamecellrenderer.tsx_46']"
    ):
        button.click()


def _image_widths(driver, at_least: int, timeout_s: float = 60) -> list[int]:
    """The natural widths of the page's images, once one is ``at_least`` wide (or at the timeout):
    the UI fetches an artifact and draws it after the page has loaded."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def widths() -> list[int]:
        return [
            img.get_property("naturalWidth") or 0
            for img in driver.find_elements(By.TAG_NAME, "img")
        ]

    try:
        WebDriverWait(
            driver,
            timeout_s,
            poll_frequency=0.2,
            ignored_exceptions=[StaleElementReferenceException],
        ).until(lambda _: max(widths(), default=0) >= at_least)
    except TimeoutException:
        pass
    return widths()


def _queue_shows(browser, reviews: Reviews, shown: list, hidden: list) -> str:
    """The queue's page once it lists ``shown`` (by run name, asset, top channels and verdict) and
    not ``hidden``: the page's text."""
    from sensorwatch.pipeline.review.runs import run_name

    names = [run_name(a.asset, a.start) for a in shown]
    text = _page_text_with(browser, [EXPERIMENT, f"{len(shown)} matching run", *names])
    for a in hidden:
        assert run_name(a.asset, a.start) not in text
    return text


def test_the_review_link_opens_a_table_of_what_a_reviewer_decides_on(
    reviewed, browser, tmp_path
) -> None:
    _, reviews = reviewed
    waiting = reviews.list(verdict="unreviewed")
    assert len(waiting) >= 2
    browser.get(reviews.queue_url())  # the link `review list` and the demo print
    _page_text_with(browser, [EXPERIMENT, "matching runs"])
    _tidy(browser)
    # Flat (no day rows): one row per anomaly waiting, named by asset and time of day, newest first.
    text = _queue_shows(browser, reviews, waiting, [])
    headers = _headers(browser)
    for column in ("asset", "start", "Duration", "peak/threshold", "peak_score", "verdict"):
        assert column in headers, headers
    assert "sensorwatch.top_channels" in headers
    assert not {"Dataset", "Source", "Models"} & set(headers), headers
    for a in waiting:
        assert a.top_channels in text and a.start in text
    assert text.count("unreviewed") >= len(waiting)
    _screenshot(browser, tmp_path, "review-queue.png")


def test_the_review_link_filters_on_the_verdict_asked_for(reviewed, browser) -> None:
    _, reviews = reviewed
    first, *rest = reviews.list(verdict="unreviewed")
    reviews.label(first.event_id, "investigate", by="ui-test")
    try:
        browser.get(reviews.queue_url("investigate"))
        _queue_shows(browser, reviews, [first], rest)
        browser.get(reviews.queue_url())
        _queue_shows(browser, reviews, rest, [first])
    finally:
        reviews.label(first.event_id, "confirmed", by="ui-test")


def _headers(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        h.get_attribute("textContent").strip()
        for h in driver.find_elements(By.CSS_SELECTOR, ".ag-header-cell")
    ]


def test_an_anomaly_page_shows_its_asset_verdict_and_plot(reviewed, browser, tmp_path) -> None:
    _, reviews = reviewed
    anomaly = reviews.list()[0]
    reviews.label(anomaly.event_id, "confirmed", by="ui-test", note="seen on site")
    browser.get(reviews.url(anomaly))
    text = _page_text_with(
        browser, [anomaly.asset, "verdict", "confirmed", "peak_score", "seen on site"]
    )
    assert anomaly.event_id in text
    browser.get(reviews.url(anomaly) + "/artifacts/anomaly.png")
    _page_text_with(browser, ["anomaly.png", "event.json"])
    _tidy(browser)
    # The plot itself, fetched and drawn (the UI shows it from a blob of the artifact): the alarm
    # in context, wider than a window alone.
    drawn = _image_widths(browser, at_least=800)
    _screenshot(browser, tmp_path, "review-anomaly.png")
    assert max(drawn, default=0) >= 800, drawn
