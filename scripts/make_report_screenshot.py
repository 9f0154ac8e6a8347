"""Render the HTML report of the shipped fraud run and screenshot it into docs/report.png.

    python scripts/make_report_screenshot.py [--out docs/report.png] [--height 1500]

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver) and
selenium (in the dev extra). The browser runs headless, offline, with a fresh profile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report.png")
    parser.add_argument("--width", type=int, default=1240)
    parser.add_argument("--height", type=int, default=1550, help="pixels of the page's top to keep")
    parser.add_argument("--html", type=Path, default=None, help="also keep the HTML page here")
    args = parser.parse_args()

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("needs chromium and chromedriver: apt-get install chromium chromium-driver", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    import ckptaudit

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(args.html or Path(tmp) / "report.html").resolve()
        os.chdir(ROOT)  # the page names the run as given: fixtures/runs/fraud
        ckptaudit.report("fixtures/runs/fraud", ["recall", "accuracy", "roc_auc"], output=page)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={args.width},{args.height}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            driver.get(page.resolve().as_uri())
            args.out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
