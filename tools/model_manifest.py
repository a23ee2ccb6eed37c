"""``fdf_build/models/manifest.json``, shared by the tools that make the shipped model files: each tool rewrites
its own entries and keeps the others'."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def merge(out: Path, made_by: str, files: dict) -> None:
    """Write ``files`` (name -> entry) into ``out/manifest.json``, each entry tagged with the tool that made it;
    the entries other tools made stay as they were."""
    path = out / "manifest.json"
    current = json.loads(path.read_text())["files"] if path.exists() else {}
    current.update({name: {**entry, "made_by": made_by} for name, entry in files.items()})
    path.write_text(json.dumps({"files": current}, indent=1) + "\n")
