"""Open an HTML page in a real headless browser (Debian's chromium through chromedriver and Selenium) and
report what a person would see go wrong: console errors, uncaught exceptions, resources that fail to load.

``python -m tests.pagecheck report.html docs/report-headline.png`` checks a Snakemake report and saves a
screenshot of its headline table (the one in docs/results.md).
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_available() -> bool:
    """Chromium, its driver and Selenium are all installed (the report test is skipped otherwise)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return all(shutil.which(path) for path in (CHROMIUM, CHROMEDRIVER))


@contextmanager
def headless_page(path: str | Path, width: int = 1700, height: int = 1000) -> Iterator[object]:
    """A Selenium driver with ``path`` loaded, logging every console message."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(Path(path).resolve().as_uri())
        time.sleep(1.0)  # the report builds its page with React after load
        yield driver
    finally:
        driver.quit()


def console_errors(driver: object) -> list[str]:
    """Console messages of level error (console.error, uncaught exceptions, failed loads) so far."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_report_item(driver: object, category: str, item: str) -> None:
    """Click a category of a Snakemake report's menu, then the eye button of one of its results."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//*[normalize-space(text())='{category}']").click()
    time.sleep(0.5)
    row = driver.find_element(By.XPATH, f"//td[normalize-space(text())='{item}']/..")
    row.find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()
    time.sleep(1.0)


def shown_result_text(driver: object) -> str:
    """The text of the result a report shows (HTML results are shown in an iframe)."""
    from selenium.webdriver.common.by import By

    frames = driver.find_elements(By.TAG_NAME, "iframe")
    if not frames:
        return driver.find_element(By.TAG_NAME, "body").text
    driver.switch_to.frame(frames[0])
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.switch_to.default_content()


def main(report: str, screenshot: str) -> int:
    with headless_page(report) as driver:
        open_report_item(driver, "1. Tables", "headline")
        driver.save_screenshot(screenshot)
        errors = console_errors(driver)
    print("\n".join(errors) or f"no console errors; screenshot {screenshot}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
