import json
import os
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]
FACES = Path(__file__).resolve().parent / "data" / "faces"
DEMO_DATA = REPO / "fdf_build" / "demo_data"


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    """The annotated real face photos, with their licenses, in tests/data/faces (part of the repo: never skipped)."""
    return FACES


@pytest.fixture(scope="session")
def annotations(shared_faces) -> list[dict]:
    return json.loads((shared_faces / "annotations.json").read_text())["images"]


def load_rgb(path: os.PathLike):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def detector():
    from fdf_build.models.faces import RetinaFaceDetector

    return RetinaFaceDetector()


@pytest.fixture(scope="session")
def pose():
    from fdf_build.models.pose import BlazePoseFull

    return BlazePoseFull()


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    """No test listens beyond loopback: a bind to another address in this process fails the test that tried."""
    import socket

    from .loopback import guarded_bind

    bind = socket.socket.bind
    socket.socket.bind = guarded_bind(bind)
    yield
    socket.socket.bind = bind


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """The README's first command's demo, through the installed ``fdf-build`` console script, with ``--serve``:
    its dataset and summary for the demo's tests, its photo server for the commands that fetch. Stopped with
    Ctrl-C at the end of the session, which it must survive cleanly."""
    from .installed import start_demo_server

    base = tmp_path_factory.mktemp("demo")
    server = start_demo_server(base / "demo", base / "demo.stderr")
    yield server
    assert server.stop() == 0, (base / "demo.stderr").read_text()


@pytest.fixture(autouse=True, scope="session")
def model_cache(tmp_path_factory):
    """Models built at first use (the face parser's ONNX graph) go to a folder of this session, not the user's
    cache: each session builds them once, as a fresh install does."""
    path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("FDF_BUILD_CACHE")
    os.environ["FDF_BUILD_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["FDF_BUILD_CACHE"]
    else:
        os.environ["FDF_BUILD_CACHE"] = old
