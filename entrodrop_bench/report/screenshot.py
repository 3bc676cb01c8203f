"""A screenshot of a leaderboard page in headless Chromium (through Playwright, the `dev` extra), as a reader
first sees it at 1400 px, with the first compared entry's breakdown and provenance opened."""

from __future__ import annotations

import shutil
from pathlib import Path

from entrodrop_bench.errors import UserError

WIDTH = 1400
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary on PATH, or None."""
    return next((p for p in (shutil.which(n) for n in BROWSERS) if p), None)


def screenshot(page: Path, out: Path, width: int = WIDTH) -> Path:
    """Save a full-page PNG of `page` at `width` px to `out`."""
    browser_path = chromium()
    if browser_path is None:
        raise UserError(f"--screenshot needs a Chromium binary ({' or '.join(BROWSERS)} on PATH); none was found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("--screenshot needs Playwright: pip install -e '.[dev]'") from None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            view = browser.new_page(viewport={"width": width, "height": 900})
            view.goto(Path(page).resolve().as_uri())
            first = view.locator("tbody.entry:not(.baseline) button.open").first
            if first.count():
                first.click()
                view.locator("tbody.entry:not(.baseline) details.prov").first.evaluate("d => d.open = true")
            out.parent.mkdir(parents=True, exist_ok=True)
            view.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    return out
