"""Kill points: run a real ``fdf-build`` command and SIGKILL it just before its N-th durable filesystem operation.

The durable operations are every call a command makes to ``os.replace``, ``os.rename``, ``os.link``,
``os.unlink``/``os.remove``, ``os.fsync``, ``os.rmdir``, ``os.mkdir`` (``makedirs``, ``mkdtemp`` and pathlib go
through it), ``shutil.rmtree`` (and the unlinks and rmdirs inside it) and :func:`fdf_build.files.exchange`, counted
in the child process only, whatever code makes them: a dry run counts them, then each is a kill point.

A zygote process imports the package once; each command runs in a child forked from it (a real process, which
receives a real SIGKILL), so a kill point costs a fork rather than an interpreter start. Run as a script, this
module is that zygote: one JSON request a line on stdin, one JSON answer a line on stdout.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

OPS = ("replace", "rename", "link", "unlink", "remove", "fsync", "rmdir", "mkdir")


def _arm(kill_at: Optional[int], log: list) -> None:
    """Count every durable operation in this process; SIGKILL it before operation number ``kill_at``."""
    import shutil

    from fdf_build import files

    def wrap(module, name):
        real = getattr(module, name)

        def op(*args, **kwargs):
            log.append(name)
            if len(log) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(module, name, op)

    for name in OPS:
        wrap(os, name)
    wrap(shutil, "rmtree")
    wrap(files, "exchange")


def _child(request: dict) -> None:
    """In the forked child: run the command with its output in files, counting (and maybe killed at) its ops."""
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.chdir(request["cwd"])
    log: list = []
    _arm(request.get("kill_at"), log)
    code = 0
    try:
        from fdf_build.cli.main import cli

        cli.main(args=request["argv"], prog_name="fdf-build", standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # a traceback is a failure the test reports (the output file has it)
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["ops"], "w") as f:
        json.dump(log, f)
    os._exit(code)


def serve() -> None:
    """The zygote: import once, then fork a child per request and answer how it ended."""
    import fdf_build.cli.main  # noqa: F401 - everything a command imports, imported before the forks
    import fdf_build.dataset.archive  # noqa: F401
    import fdf_build.pipeline  # noqa: F401
    import fdf_build.privacy.removal  # noqa: F401
    import multiprocessing  # noqa: F401 - what tqdm's bars import on their first use

    gc.freeze()  # the children's garbage collections then leave the imported objects' pages shared (copy on write)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        answer = {"killed": killed, "code": None if killed else os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Zygote:
    """The test side: ``run(argv, cwd, kill_at=None)`` -> (killed, exit code, ops, output).

    Started on first use, and again after a run was interrupted (a test's timeout), so that no answer is read
    for the wrong request.
    """

    def __init__(self, scratch: Path):
        self.process: Optional[subprocess.Popen] = None
        self.scratch = Path(scratch)

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        return subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=env)

    def run(self, argv: list, cwd: Path, kill_at: Optional[int] = None) -> tuple[bool, Optional[int], list, str]:
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "kill_at": kill_at,
                   "stdout": str(self.scratch / "output.txt"), "ops": str(self.scratch / "ops.json")}
        (self.scratch / "ops.json").unlink(missing_ok=True)
        self.process = self.process or self._start()
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answer = json.loads(self.process.stdout.readline())
        except BaseException:
            self.close()
            raise
        ops_file = self.scratch / "ops.json"
        ops = json.loads(ops_file.read_text()) if ops_file.exists() else []
        return answer["killed"], answer["code"], ops, (self.scratch / "output.txt").read_text(errors="replace")

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()  # its children have all been waited for: none is left behind
            self.process.wait(30)
            self.process = None


if __name__ == "__main__":
    serve()
