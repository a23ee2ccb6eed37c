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
