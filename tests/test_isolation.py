"""One bad photo never stops a build; a systemic failure (a full disk) stops it fast; oversized images are refused
before decoding. All through real builds of the bundled photos served by a local HTTP server."""

import errno
import json
import logging
import struct
import zlib
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fdf_build import pipeline, shard
from fdf_build.cli.main import cli
from fdf_build.config import BuildConfig
from fdf_build.dataset import splitwriter, writer
from fdf_build.decode import declared_size, decode_image
from fdf_build.demo import demo_metadata, demo_photos
from fdf_build.localserver import LocalServer
from fdf_build.records import SkipReason
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo

from .conftest import FACES
from .test_pipeline import dataset_bytes


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of ``width`` x ``height``: tiny on the wire, gigapixels decoded."""
    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    body = b"".join(z.compress(row * 1000) for _ in range(height // 1000)) + z.compress(row * (height % 1000))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body + z.flush()) + _chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The bundled photos plus a 40000 x 40000 PNG, as YFCC metadata and the routes that serve them."""
    photos = demo_photos()
    records, routes = demo_metadata(photos)
    bomb = synthetic_photo(len(records), title="40000 x 40000 PNG")
    routes[urlsplit(bomb.download_url).path] = huge_png(40000, 40000)
    records.append(bomb)
    tsv = tmp_path_factory.mktemp("meta") / "yfcc.tsv"
    tsv.write_text("".join(format_line(p) + "\n" for p in records))
    return tsv, routes, photos, bomb


def photo_rows(out):
    return {r["photo_id"]: r for shard in sorted((out / ".work").glob("shard_*"))
            for r in map(json.loads, (shard / "photos.jsonl").read_text().splitlines())}


def build_args(tsv, out, server, *extra):
    return ["build", str(tsv), "--out", str(out), "--base-url", server.url, "--crawl-date", "2026-01-01",
            "--shard-size", "4", *extra]


def test_declared_size_reads_png_and_jpeg_headers():
    for path in sorted(FACES.glob("*.[jp][pn]g")):
        image = cv2.imread(str(path))
        assert declared_size(path.read_bytes()) == (image.shape[1], image.shape[0]), path.name
    progressive = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]
    assert declared_size(progressive.tobytes()) == (53, 37)
    assert declared_size(b"<html>not an image</html>") is None


def test_a_jpeg_declaring_too_many_pixels_is_refused_before_decoding():
    data = bytearray((FACES / "nasa_apollo11_crew.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5: sof + 9] = struct.pack(">HH", 30000, 30000)  # height, width
    skip = decode_image(bytes(data))
    assert skip.reason is SkipReason.TOO_LARGE and "30000x30000" in skip.detail
    # under a cap it does not exceed, the same photo decodes as before
    assert decode_image((FACES / "nasa_apollo11_crew.jpg").read_bytes(), max_pixels=600 * 471).shape == (471, 600, 3)


def test_oversized_png_among_real_photos_is_too_large_and_the_build_goes_on(world, tmp_path, detector):
    tsv, routes, photos, bomb = world
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, build_args(tsv, tmp_path / "o", server))
    assert result.exit_code == 0, result.output
    assert "too_large: 1" in result.output
    row = photo_rows(tmp_path / "o")[bomb.photo_id]
    assert row["status"] == "too_large" and "40000x40000" in row["detail"]
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["skipped"]["too_large"] == 1
    expected = sum(f.width >= 64 and f.height >= 64 for data in photos.values() for f in detector(decode_image(data)))
    assert stats["faces"]["kept"] == expected > 0


def test_max_pixels_option_caps_what_is_decoded(world, tmp_path):
    tsv, routes, photos, _ = world
    cap = 500 * 500
    with LocalServer(routes, max_seconds=120) as server:
        result = CliRunner().invoke(cli, build_args(tsv, tmp_path / "o", server, "--max-pixels", str(cap),
                                                    "--keypoints", "none"))
    assert result.exit_code == 0, result.output
    over = sum(w * h > cap for w, h in map(declared_size, photos.values())) + 1  # + the 40000 x 40000 PNG
    assert json.loads((tmp_path / "o" / "stats.json").read_text())["skipped"]["too_large"] == over


def fail_keypoints_on(monkeypatch, size: tuple[int, int], make_error):
    """Make the keypoint stage of every build raise ``make_error()`` on photos of ``size`` (width, height)."""
    original = shard.Stages.from_config.__func__

    def from_config(cls, config, **kw):
        stages = original(cls, config, **kw)
        model = stages.keypoints

        class Faulty:
            name = model.name

            def __call__(self, image, faces):
                if (image.shape[1], image.shape[0]) == size:
                    raise make_error()
                return model(image, faces)

        stages.keypoints = Faulty()
        return stages

    monkeypatch.setattr(shard.Stages, "from_config", classmethod(from_config))


def test_an_unexpected_exception_fails_that_photo_only_and_retry_failed_redoes_it(world, tmp_path, monkeypatch,
                                                                                caplog):
    tsv, routes, photos, _ = world
    victim = "whitehouse_obama_biden.jpg"
    size = declared_size(photos[victim])
    assert [declared_size(data) for data in photos.values()].count(size) == 1
    victim_id = next(p.photo_id for p in demo_metadata(photos)[0] if p.title == "whitehouse obama biden")
    with LocalServer(routes, max_seconds=120) as server:
        with monkeypatch.context() as m:
            fail_keypoints_on(m, size, lambda: RuntimeError("model blew up"))
            with caplog.at_level(logging.DEBUG, logger="fdf_build.shard"):
                result = CliRunner().invoke(cli, build_args(tsv, tmp_path / "b", server))
        assert result.exit_code == 0, result.output
        assert "internal_error: 1" in result.output
        row = photo_rows(tmp_path / "b")[victim_id]
        assert row["status"] == "internal_error" and row["detail"] == "RuntimeError: model blew up"
        assert "kept" not in row["counts"]
        assert any(r.exc_info and "model blew up" in str(r.exc_info[1]) for r in caplog.records)
        metainfo = json.loads((tmp_path / "b" / "train" / "fdf_metainfo.json").read_text())
        assert metainfo and victim_id not in {m["photo_id"] for m in metainfo.values()}
        # once the stage works again, retry-failed redoes that photo and the dataset is a clean build's
        assert CliRunner().invoke(cli, ["retry-failed", str(tmp_path / "b"), "--base-url", server.url]).exit_code == 0
        assert CliRunner().invoke(cli, build_args(tsv, tmp_path / "clean", server)).exit_code == 0
    assert dataset_bytes(tmp_path / "b") == dataset_bytes(tmp_path / "clean")


def test_a_photo_failing_while_its_faces_are_staged_leaves_none_of_them(world, tmp_path, monkeypatch):
    """The second face of a two-face photo cannot be written: the photo is an internal error with no face kept."""
    tsv, routes, photos, _ = world
    original = writer.FaceRecord.from_crop

    def from_crop(c, **kw):
        if c.face_index == 1 and c.photo.title == "whitehouse obama biden":
            raise ValueError("cannot encode this face")
        return original(c, **kw)

    monkeypatch.setattr(writer.FaceRecord, "from_crop", staticmethod(from_crop))
    with LocalServer(routes, max_seconds=120) as server:
        config = BuildConfig(metadata=str(tsv), out=tmp_path / "o", base_url=server.url, keypoints="none")
        summary = pipeline.run_build(config)
    assert summary.skipped["internal_error"] == 1
    rows = [r for r in photo_rows(tmp_path / "o").values() if r["status"] == "internal_error"]
    assert rows[0]["detail"] == "ValueError: cannot encode this face"
    faces = [json.loads(line) for shard in (tmp_path / "o" / ".work").glob("shard_*")
             for line in (shard / "faces.jsonl").read_text().splitlines()]
    assert faces and rows[0]["photo_id"] not in {f["photo_id"] for f in faces}
    assert summary.faces["kept"] == len(faces)


@pytest.mark.parametrize("where", ["faces", "train"])
def test_a_full_disk_stops_the_build_fast_with_one_line(where, world, tmp_path, monkeypatch):
    """The disk fills while face crops are written (queued photos are dropped) or while a split is merged."""
    tsv, routes, photos, _ = world
    many = [synthetic_photo(i, nsid=f"{i}@N00") for i in range(40)]
    face = photos["whitehouse_obama_biden.jpg"]
    slow_routes = {urlsplit(p.download_url).path: face for p in many}
    (tmp_path / "many.tsv").write_text("".join(format_line(p) + "\n" for p in many))

    real_write, real_replacing = writer.atomic_write, splitwriter.replacing

    def atomic_write(path, data):  # a face crop
        if path.parent.name == where:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    def replacing(path):  # a split's file
        if where == "train" and path.name == "fdf_metainfo.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_replacing(path)

    monkeypatch.setattr(writer, "atomic_write", atomic_write)
    monkeypatch.setattr(splitwriter, "replacing", replacing)
    with LocalServer(slow_routes, latency=0.2, max_seconds=120) as server:
        result = CliRunner().invoke(cli, build_args(tmp_path / "many.tsv", tmp_path / "o", server, "--workers", "2",
                                                    "--shard-size", "100", "--keypoints", "none"))
        fetched = len(server.requests)
    assert result.exit_code == 1
    errors = [line.split("Error: ", 1)[1] for line in result.output.splitlines() if "Error: " in line]
    assert len(errors) == 1 and errors[0].startswith("build stopped: ") and "No space left on device" in errors[0]
    assert "run the same command again to resume" in errors[0]
    assert "Traceback" not in result.output
    if where == "faces":
        assert fetched <= 6, f"{fetched} of 40 photos fetched after the disk filled: queued work was not cancelled"
