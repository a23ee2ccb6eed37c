"""The commands as a user runs them: the console scripts ``pip install`` put beside this interpreter, and the two
scripts run by this interpreter from the repository root, each a subprocess."""

import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: what a user types, as argv prefixes
FDF_BUILD = [str(BIN / "fdf-build")]
DOWNLOAD = [sys.executable, "download_fdf256.py"]
SEARCH = [sys.executable, "search_username.py"]


def run(command: list, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    """One command to its end, from the repository root (where the README's commands run)."""
    return subprocess.run([*command, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@dataclass
class DemoServer:
    """``fdf-build demo --out OUT --serve`` running: what it printed before serving, its server and metadata file."""

    out: Path
    summary: list[str]
    url: str
    metadata: Path
    process: subprocess.Popen

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; returns its exit status."""
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_demo_server(out: Path, stderr_file: Path, *, deadline: float = 600) -> DemoServer:
    """Start the demo through the installed console script and wait, by its own output, until it serves."""
    stderr = open(stderr_file, "w")
    process = subprocess.Popen([*FDF_BUILD, "demo", "--out", str(out), "--serve"], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    stderr.close()
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                     daemon=True).start()
    printed = []
    try:
        while True:
            line = lines.get(timeout=deadline)
            if line is None:
                raise AssertionError(f"the demo ended (exit {process.wait()}) without serving:\n" + "".join(printed)
                                     + stderr_file.read_text())
            printed.append(line.rstrip("\n"))
            if line.startswith("demo photo server: "):
                url = line.split()[3]
            if line.startswith("demo metadata: "):
                metadata = REPO / line.split(": ", 1)[1].strip()
                break
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    summary = printed[:next(i for i, text in enumerate(printed) if text.startswith("demo photo server: "))]
    return DemoServer(out, summary, url, metadata, process)
