"""The owner page run by a real uvicorn server on a loopback port, in a background thread, for the serve tests."""

import socket
import threading
import time

import pytest

uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve]'")


class ServerThread:
    """``with ServerThread(app) as url:`` serves ``app`` on 127.0.0.1 until the block ends (at most ``timeout`` s),
    with the owner page's own limits (``fdf_build.privacy.httpguard``); ``limits`` override some of them."""

    def __init__(self, app, timeout: float = 120.0, **limits):
        from fdf_build.privacy.httpguard import server_config

        # log_config=None: uvicorn's loggers propagate to the root logger, where pytest's caplog sees them
        self.server = uvicorn.Server(server_config(app, log_config=None, access_log=True, **limits))
        self.timeout = timeout

    def __enter__(self) -> str:
        sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        self.stopper = threading.Timer(self.timeout, self.stop)  # a hung test never leaves a server behind
        self.stopper.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"

    def stop(self) -> None:
        self.server.should_exit = True

    def __exit__(self, *exc) -> None:
        self.stopper.cancel()
        self.stop()
        self.thread.join(10)
