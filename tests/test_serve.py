"""The owner page over real HTTP: same answers as the CLI search, path and escaping attacks, bounds, errors,
the request queue and ``remove --requests``. The browser test is in test_serve_browser.py."""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.cli.search import search_command
from fdf_build.dataset.layout import load_metainfo, verify_dataset
from fdf_build.dataset.metainfo import read_metainfo
from fdf_build.files import write_json
from fdf_build.privacy import index as privacy_index
from fdf_build.privacy.requests import BadRequest, Query, Request, append_request, parse_query, read_queue

from .conftest import REPO
from .datasets import make_dataset
from .serving import ServerThread

serve = pytest.importorskip("fdf_build.privacy.serve", reason="the serve extra is not installed: pip install -e '.[serve]'")

ALICE, BOB, CAROL = "11111111@N00", "22222222@N01", "33333333@N02"
BASE58 = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"


def base58(n: int) -> str:
    """Flickr's short-link encoding, written out here independently of the code under test."""
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = BASE58[r] + out
    return out or BASE58[0]


@pytest.fixture
def dataset(tmp_path):
    """ALICE has faces in both splits, BOB and CAROL in train only: written by the project's writer from a real photo."""
    root = make_dataset(tmp_path / "ds", [ALICE, BOB, ALICE, CAROL, BOB], val_fraction=0.0)
    other = make_dataset(tmp_path / "other", [ALICE, BOB], val_fraction=1.0, first_photo=100)
    shutil.rmtree(root / "val")
    shutil.move(str(other / "val"), str(root / "val"))
    assert verify_dataset(root) == {"train": [], "val": []}
    return root


@pytest.fixture
def server(dataset):
    with ServerThread(serve.create_app(dataset)) as url:
        yield url


class Page(HTMLParser):
    """What a reader of the page gets: image sources, links, text."""

    def __init__(self, html: str):
        super().__init__()
        self.images, self.links, self.text, self.tags = [], [], [], []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs.get("href"))

    def handle_data(self, data):
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


def cli_answers(dataset, *args) -> list:
    result = CliRunner().invoke(search_command, [str(dataset), "--json", *args])
    assert result.exit_code in (0, 1), result.output
    return sorted((m["split"], m["image"]) for m in json.loads(result.stdout))


def page_answers(url, query) -> list:
    response = requests.get(url + "search", params={"q": query}, timeout=10)
    assert response.status_code == 200, response.text
    found = []
    for src in Page(response.text).images:
        absolute = urlsplit(requests.compat.urljoin(response.url, src)).path
        _, image, split, name = absolute.split("/")
        assert image == "image" and name.endswith(".png")
        found.append((split, int(name[:-4])))
    return sorted(found)


def photo_of(dataset, split, image) -> int:
    return read_metainfo(dataset / split)[str(image)].photo_id


# ---------------------------------------------------------------- query parsing


def test_parse_query_takes_every_form_the_cli_takes():
    photo = 2899406734
    assert parse_query(" 12345678@N00 ") == Query("12345678@N00", nsids=("12345678@N00",))
    assert parse_query("12345678@n00").nsids == ("12345678@N00",)  # Flickr writes @N upper case
    forms = [str(photo), f"https://www.flickr.com/photos/someone/{photo}/", f"flickr.com/photos/12@N00/{photo}/in/x",
             f"https://live.staticflickr.com/65535/{photo}_2f8cd2aa4b_b.jpg", f"https://flic.kr/p/{base58(photo)}",
             f"flic.kr/p/{base58(photo)}"]
    for text in forms:
        assert parse_query(text).photo_ids == (photo,), text
    assert parse_query("https://www.flickr.com/photos/12345678@N00/").nsids == ("12345678@N00",)
    for bad in ["", "   ", "alice", "https://www.flickr.com/photos/alice/", "https://example.com/about",
                "flic.kr/p/l", "9" * 16, "x" * 1001, "<script>alert(1)</script>"]:
        with pytest.raises(BadRequest):
            parse_query(bad)


# ---------------------------------------------------------------- search


def test_search_page_gives_the_cli_answers_for_every_query_form(dataset, server):
    image = cli_answers(dataset, "--user-nsid", BOB)[0]
    photo = photo_of(dataset, *image)
    cases = [
        (ALICE, ["--user-nsid", ALICE]),
        (BOB.lower(), ["--user-nsid", BOB]),
        (str(photo), ["--photo-id", str(photo)]),
        (f"https://www.flickr.com/photos/bob/{photo}/", ["--photo-id", str(photo)]),
        (f"https://farm3.staticflickr.com/99/{photo}_abc123_z.jpg", ["--photo-id", str(photo)]),
        (f"https://flic.kr/p/{base58(photo)}", ["--photo-id", str(photo)]),
    ]
    for query, flags in cases:
        expected = cli_answers(dataset, *flags)
        assert expected, flags
        assert page_answers(server, query) == expected, query
    assert {split for split, _ in cli_answers(dataset, "--user-nsid", ALICE)} == {"train", "val"}


def test_each_face_shows_split_license_author_and_flickr_link(dataset, server):
    response = requests.get(server + "search", params={"q": CAROL}, timeout=10)
    page = Page(response.text)
    faces = {k: r for k, r in read_metainfo(dataset / "train").items() if r.user_nsid == CAROL}
    assert len(page.images) == len(faces) > 0
    for number, r in faces.items():
        assert f"image/train/{number}.png" in page.images
        assert f"train, face {number}" in page.words
        assert "flickr.com/photos/" in r.photo_url and r.photo_url in page.links and r.license_url in page.links
        assert r.license in page.words and r.author in page.words
    assert f"{len(faces)} face" in page.words
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_nothing_found_and_malformed_queries_say_so(server):
    response = requests.get(server + "search", params={"q": "99999999@N09"}, timeout=10)
    assert response.status_code == 200
    assert "No face of 99999999@N09 is in this dataset." in Page(response.text).words
    assert Page(response.text).images == []
    for bad in ["alice", "", "https://example.com/x.jpg"]:
        response = requests.get(server + "search", params={"q": bad}, timeout=10)
        assert response.status_code == 400
        assert "Enter your Flickr NSID" in Page(response.text).words


# ---------------------------------------------------------------- images and path attacks


class OpenedFiles:
    """Every file this process opens while recording (an audit hook: nothing can open a file around it)."""

    hooked = False
    active = None

    def __enter__(self):
        if not OpenedFiles.hooked:
            sys.addaudithook(lambda event, args: OpenedFiles.active is not None and event == "open"
                             and isinstance(args[0], (str, bytes, os.PathLike))
                             and OpenedFiles.active.append(os.fsdecode(args[0])))
            OpenedFiles.hooked = True
        OpenedFiles.active = self.paths = []
        return self

    def __exit__(self, *exc):
        OpenedFiles.active = None


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (requests and browsers would normalise '..' away)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_images_are_served_and_nothing_outside_images_is(dataset, server, tmp_path):
    png = (dataset / "train" / "images" / "0.png").read_bytes()
    response = requests.get(server + "image/train/0.png", timeout=10)
    assert response.status_code == 200 and response.content == png
    assert response.headers["content-type"] == "image/png"
    (tmp_path / "secret.png").write_bytes(b"secret")
    os.symlink(dataset / "train" / "fdf_metainfo.json", dataset / "train" / "images" / "900.png")
    os.symlink(tmp_path / "secret.png", dataset / "train" / "images" / "901.png")
    count = len(load_metainfo(dataset / "train"))
    attacks = [
        "/image/train/../fdf_metainfo.json", "/image/train/..%2ffdf_metainfo.json", "/image/train/%2e%2e/landmarks.npy",
        "/image/%2e%2e/train/images/0.png", "/image/..%2f..%2f..%2fetc%2fpasswd", "/image/train/..%2f..%2f..%2fetc%2fpasswd",
        "/image/train/%2fetc%2fpasswd", "//etc/passwd", "/image//etc/passwd", "/image/train//etc/passwd",
        f"/image/train/{tmp_path / 'secret.png'}", "/image/train/900.png", "/image/train/901.png",
        f"/image/train/{count}.png", "/image/train/00.png", "/image/train/-1.png", "/image/train/1e3.png",
        "/image/train/0.png%00.txt", "/image/train/0.PNG", "/image/test/0.png", "/image/images/0.png",
        "/image/train/99999999999.png", "/image/train/0.png/",
    ]
    with OpenedFiles() as opened:
        for path in attacks:
            status, body = raw_get(server, path)
            assert status == 404, path
            assert b"secret" not in body and b"user_nsid" not in body, path
        assert raw_get(server, "/image/train/0.png") == (200, png)
    # the dataset's folder is opened, then each name below it on its own, links not followed: never a path
    assert os.path.realpath(dataset) in {os.path.realpath(p) for p in opened.paths}
    below = {p for p in opened.paths if not os.path.isabs(p)}
    assert below and all(p in ("train", "images") or re.fullmatch(r"[0-9]+\.png", p) for p in below), below
    outside = [os.path.realpath(p) for p in opened.paths if os.path.isabs(p) and not os.path.isdir(p)]
    assert not [p for p in outside if p.startswith(os.path.realpath(tmp_path)) or p.startswith("/etc")], outside


# ---------------------------------------------------------------- escaping, bounds, errors


def test_everything_from_outside_is_escaped(dataset):
    meta = load_metainfo(dataset / "train")
    entry = next(m for m in meta.values() if m["user_nsid"] == CAROL)
    entry.update(author='<script>alert("author")</script>', photo_title="<img src=x onerror=alert(1)>",
                 license="<b>bold</b>", license_url="javascript:alert(1)", photo_url="javascript:alert(2)")
    write_json(dataset / "train" / "fdf_metainfo.json", meta)
    with ServerThread(serve.create_app(dataset, title="<i>t</i>")) as url:
        pages = [requests.get(url + "search", params={"q": q}, timeout=10).text
                 for q in [CAROL, '"><script>alert(1)</script>', "<script>alert(1)</script>"]]
        pages.append(requests.post(url + "requests", data={"q": CAROL, "contact": '"><script>x</script>@a.b'},
                                   timeout=10).text)
    for html in pages:
        tags = set(Page(html).tags)
        assert not tags & {"script", "b", "i", "iframe"}, tags
        assert "javascript:" not in " ".join(str(a) for a in Page(html).links)
        assert "<script" not in html and "onerror=alert" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert '<script>alert("author")</script>' in Page(pages[0]).words  # shown as text, not run
    assert len(Page(pages[0]).images) == sum(m["user_nsid"] == CAROL for m in meta.values())


def test_inputs_are_bounded(dataset, server):
    response = requests.get(server + "search", params={"q": "1" * 1001}, timeout=10)
    assert response.status_code == 400 and "longer than 1000" in response.text
    status, _ = raw_get(server, "/search?q=" + "1" * 100_000)  # over h11's bound on a request head
    assert 400 <= status < 500
    response = requests.post(server + "requests", data={"q": ALICE, "contact": "a@b.c", "reason": "x" * 20_000},
                             timeout=10)
    assert response.status_code == 413
    response = requests.post(server + "requests", data={"q": ALICE, "contact": "a@b.c", "reason": "x" * 2001},
                             timeout=10)
    assert response.status_code == 400 and "longer than 2000" in response.text
    response = requests.post(server + "requests", data="&".join(f"f{i}=1" for i in range(50)),
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert response.status_code == 400
    response = requests.post(server + "requests", files={"q": ("q.txt", ALICE)}, timeout=10)
    assert response.status_code == 415
    assert not (dataset / "removal-requests.jsonl").exists()
    assert requests.get(server, timeout=10).status_code == 200  # still serving


def test_errors_show_no_trace_and_log_it(dataset, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail of the failure")

    with ServerThread(serve.create_app(dataset)) as url:
        monkeypatch.setattr(serve, "search", broken)
        response = requests.get(url + "search", params={"q": ALICE}, timeout=10)
        assert response.status_code == 500
        assert "Traceback" not in response.text and "secret detail" not in response.text
        assert "went wrong" in response.text
        deadline = time.monotonic() + 10  # uvicorn logs the error once the response is sent
        while not any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records):
            assert time.monotonic() < deadline, "the error was not logged"
            time.sleep(0.05)

        def unreadable(*args, **kwargs):
            raise privacy_index.BadInput("fdf_metainfo.json: not a valid fdf_metainfo.json (secret)")

        monkeypatch.setattr(serve, "search", unreadable)
        response = requests.get(url + "search", params={"q": ALICE}, timeout=10)
        assert response.status_code == 503 and "secret" not in response.text and "try again" in response.text
        response = requests.get(url + "nowhere/at/all", timeout=10)
        assert response.status_code == 404 and 'href="../../"' in response.text  # back to the page, any prefix
        assert requests.delete(url + "search", timeout=10).status_code == 405


# ---------------------------------------------------------------- requests and remove --requests


def test_request_is_queued_then_applied_by_remove_requests(dataset, server):
    before = cli_answers(dataset, "--user-nsid", ALICE)
    bad = requests.post(server + "requests", data={"q": ALICE, "contact": "not an address"}, timeout=10)
    assert bad.status_code == 400 and "e-mail address" in bad.text and not (dataset / "removal-requests.jsonl").exists()
    photo = photo_of(dataset, *cli_answers(dataset, "--user-nsid", CAROL)[0])
    for q, contact in [(ALICE, "alice@example.org"), (f"https://flic.kr/p/{base58(photo)}", "carol@example.org")]:
        response = requests.post(server + "requests", data={"q": q, "contact": contact, "reason": "my face"},
                                 timeout=10)
        assert response.status_code == 200 and "Request received" in response.text
        assert "removes nothing by itself" in Page(response.text).words
    assert requests.get(server + "requests", timeout=10, allow_redirects=False).status_code == 303
    assert cli_answers(dataset, "--user-nsid", ALICE) == before  # a request alone removes nothing
    rows = [json.loads(line) for line in (dataset / "removal-requests.jsonl").read_text().splitlines()]
    assert [(r["nsids"], r["photo_ids"], r["contact"], r["faces_found"]) for r in rows] == [
        ([ALICE], [], "alice@example.org", len(before)),
        ([], [photo], "carol@example.org", len(cli_answers(dataset, "--photo-id", str(photo)))),
    ]

    queue = str(dataset / "removal-requests.jsonl")
    dry = CliRunner().invoke(cli, ["remove", str(dataset), "--requests", queue, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "2 pending request(s)" in dry.output and cli_answers(dataset, "--user-nsid", ALICE) == before
    carol_left = len(cli_answers(dataset, "--user-nsid", CAROL)) - len(cli_answers(dataset, "--photo-id", str(photo)))
    done = CliRunner().invoke(cli, ["remove", str(dataset), "--requests", queue])
    assert done.exit_code == 0, done.output
    assert "2 request(s) applied" in done.output
    assert cli_answers(dataset, "--user-nsid", ALICE) == [] and cli_answers(dataset, "--photo-id", str(photo)) == []
    assert len(cli_answers(dataset, "--user-nsid", CAROL)) == carol_left
    assert page_answers(server, ALICE) == []
    assert verify_dataset(dataset) == {"train": [], "val": []}
    assert ALICE in (dataset / "blocklist.txt").read_text().split() and str(photo) in (dataset / "blocklist.txt").read_text()
    assert read_queue(dataset / "removal-requests.jsonl").pending == []
    again = CliRunner().invoke(cli, ["remove", str(dataset), "--requests", queue])
    assert again.exit_code == 0 and "0 request(s) applied" in again.output and "2 applied earlier" in again.output
    mixed = CliRunner().invoke(cli, ["remove", str(dataset), "--requests", queue, "--user-nsid", BOB])
    assert mixed.exit_code == 2


def test_queue_reading_skips_malformed_lines_and_an_append_in_progress(tmp_path):
    path = tmp_path / "q.jsonl"
    first = Request(parse_query(ALICE), "a@b.c")
    append_request(path, first)
    with open(path, "a") as f:
        f.write("not json\n" + json.dumps({"request": "x", "query": "q"}) + "\n" + '{"request": "half')
    queue = read_queue(path)
    assert [r.id for r in queue.pending] == [first.id]
    assert len(queue.malformed) == 2 and queue.malformed[0].startswith("line 2")


def test_concurrent_requests_all_land_as_whole_lines(dataset, server):
    def send(i):
        requests.post(server + "requests", data={"q": f"{10_000_000 + i}@N00", "contact": f"u{i}@example.org",
                                                 "reason": "r" * 1500}, timeout=30)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    queue = read_queue(dataset / "removal-requests.jsonl")
    assert queue.malformed == [] and len(queue.pending) == 24
    assert {r.contact for r in queue.pending} == {f"u{i}@example.org" for i in range(24)}


# ---------------------------------------------------------------- the command


def test_serve_command_serves_and_logs_access_to_stderr(dataset):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "fdf_build", "serve", str(dataset), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url, lines, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "running on http://127.0.0.1:" in line:
                url = line.split("running on ")[1].split()[0] + "/"
        assert url, "".join(lines)
        assert requests.get(url + "search", params={"q": ALICE}, timeout=10).status_code == 200
        assert requests.get(url + "image/train/..%2f..%2fetc%2fpasswd", timeout=10).status_code == 404
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    log = "".join(lines) + err
    # Each request is logged on stderr, one line naming its path and status; the server's own wording is its own.
    assert any("/search" in line and " 200" in line for line in log.splitlines()), log
    assert any("passwd" in line and " 404" in line for line in log.splitlines()), log
    assert out == ""


def test_serve_command_refuses_a_folder_without_a_dataset_or_a_queue_it_cannot_write(tmp_path, dataset, monkeypatch):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "no train/ or val/" in result.output
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and writable(path, mode))  # root writes all
    result = CliRunner().invoke(cli, ["serve", str(dataset)])
    assert result.exit_code == 1 and "removal-requests.jsonl: cannot be written; give --requests" in result.output
