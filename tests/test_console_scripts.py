"""The commands as a user runs them: the console scripts that ``pip install`` put beside this interpreter.

Tests that call the library or ``python -m fdf_build`` still pass when an entry point in setup.cfg names a module
that does not exist; these do not."""

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_installed_fdf_build_script_loads_and_lists_its_commands():
    script = BIN / "fdf-build"
    assert script.exists(), f"{script} is missing: install the project (pip install -e .) into this interpreter"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in ("build", "demo", "scan", "remove", "serve"):
        assert f"  {command} " in result.stdout, result.stdout
