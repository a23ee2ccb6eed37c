"""The owner page in a real browser: Debian's chromium driven by selenium through Debian's chromedriver, on the
offline demo's dataset. Skips, saying why, where no browser is installed; .ci/run installs one."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.dataset.metainfo import read_metainfo

from .conftest import REPO
from .serving import ServerThread

serve = pytest.importorskip("fdf_build.privacy.serve", reason="the serve extra is not installed: pip install -e '.[serve]'")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from .browser import browser, needs_browser  # noqa: E402,F401 (a fixture)

pytestmark = needs_browser


@pytest.fixture(scope="module")
def demo(demo_server, tmp_path_factory):
    """A copy of the session's demo dataset (conftest), which this test changes."""
    return shutil.copytree(demo_server.out, tmp_path_factory.mktemp("demo") / "demo", symlinks=True)


def search_username(path, *args) -> list:
    """What the seed's script answers, run as its users run it."""
    result = subprocess.run([sys.executable, str(REPO / "search_username.py"), str(path), "--json", *args],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode in (0, 1), result.stderr
    return sorted((m["split"], m["image"]) for m in json.loads(result.stdout))


def shown_faces(driver) -> list:
    """(split, image) of every thumbnail on the page, each checked to have loaded as a 256 x 256 image."""
    faces = []
    for img in driver.find_elements(By.CSS_SELECTOR, "ul.faces img"):
        loaded = driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        assert loaded == 256 and driver.execute_script("return arguments[0].naturalHeight", img) == 256
        split, name = img.get_attribute("src").split("/image/")[1].split("/")
        faces.append((split, int(name.removesuffix(".png"))))
    return sorted(faces)


def search(driver, url, text):
    driver.get(url)
    box = driver.find_element(By.NAME, "q")
    to_next_page(driver, lambda: box.send_keys(text + Keys.ENTER))


def to_next_page(driver, action):
    """Does ``action`` and waits until the page it was done on is replaced by a fully loaded one, thumbnails and all.

    The old page is marked on its window, not found by an element: asking chromedriver about an element of a page
    being replaced can fail with an inspector error instead of saying it is stale, and so can a script run in that
    moment, which is why the wait tries again."""
    driver.execute_script("window.fdfOldPage = true")
    action()
    WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(lambda d: d.execute_script(
        "return !window.fdfOldPage && document.readyState === 'complete'"
        " && Array.from(document.images).every(i => i.complete)"))


def test_owner_finds_their_faces_and_asks_for_removal_in_a_browser(demo, browser):
    meta = {split: read_metainfo(demo / split) for split in ("train", "val") if (demo / split / "images").is_dir()}
    owners = [r.user_nsid for split in meta.values() for r in split.values()]
    owner = max(set(owners), key=owners.count)  # the one with most faces: several thumbnails on one page
    expected = search_username(demo, "--user_nsid", owner)
    assert len(expected) == owners.count(owner) > 1
    photo = next(r for split in meta.values() for r in split.values() if r.user_nsid != owner)

    with ServerThread(serve.create_app(demo)) as url:
        search(browser, url, owner)
        assert shown_faces(browser) == expected
        assert f"{len(expected)} faces of {owner} found" in browser.find_element(By.CSS_SELECTOR, ".message").text
        assert browser.find_elements(By.TAG_NAME, "script") == []
        links = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "ul.faces a")}
        assert {meta[s][str(n)].photo_url for s, n in expected} <= links

        search(browser, url, photo.photo_url)  # a photo's Flickr page URL, pasted as an owner would
        assert shown_faces(browser) == search_username(demo, "--photo-url", photo.photo_url)

        search(browser, url, '<script>document.title="owned"</script>')
        assert "Enter your Flickr NSID" in browser.find_element(By.CSS_SELECTOR, ".message").text
        assert browser.title != "owned" and browser.find_elements(By.TAG_NAME, "script") == []

        search(browser, url, owner)
        browser.find_element(By.ID, "contact").send_keys("owner@example.org")
        browser.find_element(By.ID, "reason").send_keys("These are my photos.")
        to_next_page(browser, browser.find_element(By.CSS_SELECTOR, "form.request button").click)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Request received"
        queued = [json.loads(line) for line in (demo / "removal-requests.jsonl").read_text().splitlines()]
        assert [(q["nsids"], q["contact"], q["faces_found"]) for q in queued] == [
            ([owner], "owner@example.org", len(expected))]
        assert search_username(demo, "--user_nsid", owner) == expected  # the request alone removed nothing

        result = CliRunner().invoke(cli, ["remove", str(demo), "--requests", str(demo / "removal-requests.jsonl")])
        assert result.exit_code == 0, result.output
        search(browser, url, owner)
        assert shown_faces(browser) == [] == search_username(demo, "--user_nsid", owner)
        assert f"No face of {owner} is in this dataset." in browser.find_element(By.CSS_SELECTOR, ".message").text
