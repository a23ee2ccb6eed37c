"""Remake docs/owner-page.png: the owner page of the real demo's dataset in headless chromium, searched for the
owner with the most faces, as an owner sees it.

    pip install -e ".[test,serve]"; apt-get install chromium chromium-driver
    python tools/owner_page_screenshot.py                # runs fdf-build demo into a temporary folder
    python tools/owner_page_screenshot.py data/demo      # or the demo you already ran

Not run by the tests (tests/test_serve_browser.py drives the same page); run it when the page or the demo changes.
"""

import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.demo import run_demo
from fdf_build.privacy.serve import create_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "owner-page.png"
WIDTH, HEIGHT = 1000, 1160


def screenshot(dataset: Path) -> None:
    owners = Counter(r.user_nsid for split in ("train", "val") if (dataset / split).is_dir()
                     for r in read_metainfo(dataset / split).values())
    owner, faces = owners.most_common(1)[0]
    server = uvicorn.Server(uvicorn.Config(create_app(dataset, requests_file=Path(tempfile.mkdtemp()) / "q.jsonl",
                                                      title="the demo dataset"), log_level="warning"))
    sock = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        box = driver.find_element(By.NAME, "q")
        box.send_keys(owner + Keys.ENTER)
        WebDriverWait(driver, 30).until(expected_conditions.staleness_of(box))
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
        driver.set_window_size(WIDTH, HEIGHT)
        driver.save_screenshot(str(OUT))
    finally:
        driver.quit()
        server.should_exit = True
    print(f"{OUT}: {owner}'s {faces} faces")


def main() -> None:
    if len(sys.argv) > 1:
        screenshot(Path(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp) / "demo")
        screenshot(Path(tmp) / "demo")


if __name__ == "__main__":
    main()
