"""A real S3-compatible server on 127.0.0.1 (moto's server mode), reached as a user reaches AWS.

The server speaks S3's HTTP API; the code under test talks to it through s3fs and botocore, configured only
by the standard environment (``AWS_ENDPOINT_URL``, keys, region), as a user of an S3-compatible store sets
it. The environment is set for the test session, so processes started later (the ``fdf-build`` command,
Ray's workers) inherit it. The server runs in a thread of the test process, and a timer stops it after
``MAX_SECONDS`` should the session hang.
"""

from __future__ import annotations

import itertools
import logging
import threading

import pytest

MAX_SECONDS = 900
_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    guard = threading.Timer(MAX_SECONDS, server.stop)
    guard.daemon = True
    guard.start()
    nowhere = tmp_path_factory.mktemp("aws") / "none"  # no ~/.aws file of the machine's takes part
    env = pytest.MonkeyPatch()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "fdf-test",
                       "AWS_SECRET_ACCESS_KEY": "fdf-test-secret", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(nowhere), "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}.items():
        env.setenv(key, value)
    yield f"http://{host}:{port}"
    env.undo()
    guard.cancel()
    server.stop()


@pytest.fixture
def bucket(s3_endpoint) -> str:
    """A new, empty bucket for one test: ``s3://<name>``."""
    import boto3

    name = f"fdf-test-{next(_buckets)}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


def objects(url: str) -> dict[str, bytes]:
    """Every object under ``url`` (``s3://bucket/prefix``), by its name relative to it."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {path[len(root.rstrip("/")) + 1:]: fs.cat_file(path) for path in fs.find(root)}
