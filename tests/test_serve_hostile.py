"""The owner page under hostile clients, over real loopback sockets: request heads bounded in size and time, slow
clients that cannot starve others, no cross-site form posts, no control characters stored or printed raw, no
linked folder followed. Every client here is bounded and stops with its test."""

import json
import os
import select
import shutil
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.privacy.requests import read_queue

from .datasets import make_dataset
from .serving import ServerThread

serve = pytest.importorskip("fdf_build.privacy.serve", reason="the serve extra is not installed: pip install "
                                                           "-e '.[serve]'")
httpguard = pytest.importorskip("fdf_build.privacy.httpguard")

ALICE, BOB = "11111111@N00", "22222222@N01"


@pytest.fixture
def dataset(tmp_path):
    return make_dataset(tmp_path / "ds", [ALICE, BOB, ALICE], val_fraction=0.0)


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=20)


def answer(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (or 20 s pass)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def test_a_request_head_over_16_kib_is_refused_even_in_one_piece(dataset):
    with ServerThread(serve.create_app(dataset)) as url:
        for size, status in ((15_000, b"200"), (65_000, b"431")):
            with connect(url) as sock:
                sock.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * size}\r\nConnection: close\r\n\r\n".encode())
                assert answer(sock).split(b" ")[1] == status, size


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_head_timeout(dataset):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400 + b"\r\n\r\n"
    with ServerThread(serve.create_app(dataset), head_timeout=1.0) as url, connect(url) as sock:
        sent = 0
        try:
            for byte in head:  # 0.1 s a byte: 40 s for the whole head, far past the server's 1 s
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    if sock.recv(1024, socket.MSG_PEEK) is not None:
                        break  # the server answered (and closes): it did not wait for the rest
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sent < len(head)
        assert answer(sock).startswith(b"HTTP/1.1 408")


def test_slow_clients_cannot_starve_the_others(dataset):
    """80 clients each sending a header byte every second (uvicorn alone then answers 503 to everyone while they
    last): every request of a normal client is answered, and the slow ones are closed."""
    stop = threading.Event()
    with ServerThread(serve.create_app(dataset)) as url:
        slow = [connect(url) for _ in range(80)]
        closed = []

        def drip():
            while not stop.is_set():
                for sock in slow:
                    if sock in closed:
                        continue
                    try:
                        sock.send(b"X")
                    except OSError:
                        closed.append(sock)
                stop.wait(1.0)

        dripper = threading.Thread(target=drip, daemon=True)
        for sock in slow:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        dripper.start()
        try:
            statuses = [requests.get(url, timeout=20).status_code for _ in range(20)]
            stop.set()
            dripper.join(10)
            # the longest-waiting gave their places up: answered 408 and closed, before any head timeout
            readable, _, _ = select.select(slow, [], [], 5)
            refused = [sock for sock in readable if sock.recv(64).startswith(b"HTTP/1.1 408")]
        finally:
            stop.set()
            for sock in slow:
                sock.close()
        assert statuses == [200] * 20
        assert len(refused) >= 80 - httpguard.MAX_WAITING


def post(url, headers=None, **form):
    return requests.post(url + "requests", data={"q": ALICE, "contact": "owner@example.org", **form},
                         headers=headers or {}, timeout=10)


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_a_form_posted_from_another_site_is_refused(dataset, headers):
    with ServerThread(serve.create_app(dataset)) as url:
        response = post(url, headers)
        assert response.status_code == 403 and "from this page" in response.text
        assert not (dataset / "removal-requests.jsonl").exists()
        host = urlsplit(url).netloc
        for same in ({"Origin": f"http://{host}"}, {"Sec-Fetch-Site": "same-origin", "Origin": f"http://{host}"}, {}):
            assert post(url, same).status_code == 200, same
    assert len(read_queue(dataset / "removal-requests.jsonl").pending) == 3


@pytest.mark.parametrize("form", [{"contact": "owner@example.org\x1b[2J"}, {"reason": "gone\x1b]0;owned\x07"},
                                  {"reason": "reversed \u202e text"}, {"q": f"{ALICE}\x1b[31m"}])
def test_control_characters_are_not_stored(dataset, form):
    with ServerThread(serve.create_app(dataset)) as url:
        response = post(url, **form)
    assert response.status_code == 400 and "control characters" in response.text or "e-mail" in response.text
    assert not (dataset / "removal-requests.jsonl").exists()


def test_remove_requests_prints_control_characters_escaped(dataset):
    """A queue written by an older page, or by hand: what it holds is shown, never obeyed by the terminal."""
    row = {"request": "r1\x1b[2J", "date": "2026-01-01", "query": ALICE, "nsids": [ALICE], "photo_ids": [],
           "contact": "owner@example.org\x1b]0;owned\x07", "reason": "", "faces_found": 2}
    (dataset / "removal-requests.jsonl").write_text(json.dumps(row) + "\n" + "\x1b[31mnot json\n")
    result = CliRunner().invoke(cli, ["remove", str(dataset), "--requests", str(dataset / "removal-requests.jsonl"),
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "r1\\x1b[2J" in result.output and "owner@example.org\\x1b]0;owned\\x07" in result.output


def test_a_linked_images_folder_is_not_followed(dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0.png").write_bytes(b"\x89PNG not the dataset's")
    images = dataset / "train" / "images"
    shutil.move(str(images), str(tmp_path / "images"))
    os.symlink(outside, images)
    with ServerThread(serve.create_app(dataset)) as url:
        assert requests.get(url + "image/train/0.png", timeout=10).status_code == 404
        images.unlink()
        os.symlink(tmp_path / "images", images)  # a link to the dataset's own images is a link all the same
        assert requests.get(url + "image/train/0.png", timeout=10).status_code == 404
        images.unlink()
        shutil.move(str(tmp_path / "images"), str(images))
        assert requests.get(url + "image/train/0.png", timeout=10).status_code == 200
