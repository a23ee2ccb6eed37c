"""The model files that ship inside this package (``fdf_build/models/``), each with its license beside it and its
provenance and sha256 in ``manifest.json``: the attribute models (``tools/convert_attribute_models.py``) and
MediaPipe's BlazePose and face-mesh models (``tools/extract_mediapipe_models.py``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

MODELS = Path(__file__).parent
log = logging.getLogger(__name__)
_first_interpreter = threading.Lock()
_announced = False


@lru_cache(maxsize=1)
def manifest() -> dict:
    """``manifest.json``'s ``files``: per model file its source, sha256, license and how to feed it."""
    return json.loads((MODELS / "manifest.json").read_text())["files"]


def path(name: str) -> Path:
    """The shipped file ``name``; a missing one says which, and that the package carries it."""
    found = MODELS / name
    if not found.is_file():
        raise FileNotFoundError(f"{found} is missing: reinstall fdf_build (its model files ship inside it)")
    return found


def checked_bytes(name: str) -> bytes:
    """The shipped file ``name``, checked against its manifest sha256 (a damaged copy fails here, not in the model)."""
    data = path(name).read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest()[name]["sha256"]:
        raise RuntimeError(f"{MODELS / name} does not match the sha256 in {MODELS / 'manifest.json'}: reinstall fdf_build")
    return data


@contextmanager
def native_stderr_to_log():
    """Route what native code writes to file descriptor 2 into this module's DEBUG log.

    Only for single-threaded moments: anything another thread writes to stderr meanwhile lands in the log too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                log.debug("tflite: %s", line)


def new_interpreter(model: bytes, *, threads: int = 1, input_shape: Optional[Sequence[int]] = None):
    """An ai-edge-litert interpreter of a TFLite flatbuffer, its input resized to ``input_shape`` if given and its
    tensors allocated.

    TFLite's C++ announces its XNNPACK delegate on the process's first interpreter ("INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU.", whatever the log settings), under the progress bars: that first one is made with
    native stderr sent to the DEBUG log (``-v`` shows it). Models are made before the work starts, while nothing
    else writes."""
    from ai_edge_litert.interpreter import Interpreter

    def make():
        interpreter = Interpreter(model_content=model, num_threads=threads)
        if input_shape is not None:
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(input_shape))
        interpreter.allocate_tensors()  # where the delegate is made, and announced
        return interpreter

    global _announced
    with _first_interpreter:
        if _announced:
            return make()
        with native_stderr_to_log():
            interpreter = make()
        _announced = True
        return interpreter


def tflite_interpreter(name: str, *, threads: int = 1):
    """An interpreter of the shipped TFLite file ``name`` (checked against its sha256), tensors allocated."""
    return new_interpreter(checked_bytes(name), threads=threads)
