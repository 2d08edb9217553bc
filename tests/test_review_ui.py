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

from sensorwatch.models.register import log_training
from sensorwatch.models.registry import Store, load_detector
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
    sink = ReviewSink(store, processor, experiment=EXPERIMENT, ui_url=server.uri)
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


def test_the_anomalies_experiment_page_is_the_review_queue(reviewed, browser, tmp_path) -> None:
    _, reviews = reviewed
    waiting = reviews.list(verdict="unreviewed")
    assert len(waiting) >= 2
    browser.get(reviews.queue_url())  # the experiment's runs, searched for verdict = unreviewed
    _page_text_with(browser, [EXPERIMENT, "matching runs"])
    _tidy(browser)
    # Each anomaly's run is named after its asset and start: the queue shows every asset waiting.
    text = _page_text_with(browser, sorted({f"{a.asset} {a.start[:10]}" for a in waiting}))
    assert (
        f"{len(waiting) + len({a.day for a in waiting})} matching runs" in text
    )  # the anomalies and their days
    _screenshot(browser, tmp_path, "review-queue.png")


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
    # The plot itself, fetched and drawn (the UI shows it from a blob of the artifact).
    drawn = _image_widths(browser, at_least=500)
    _screenshot(browser, tmp_path, "review-anomaly.png")
    assert max(drawn, default=0) >= 500, drawn
