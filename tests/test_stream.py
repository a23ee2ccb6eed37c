"""The metadata reader at the decompression floor: the fast scan and select count exactly what parsing every
line into a Photo does, and a truncated or corrupt compressed file stops with one line after what was read."""

import bz2
import gzip
import json
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.config import BuildConfig
from fdf_build.pipeline import select
from fdf_build.records import Malformed
from fdf_build.sources import stream
from fdf_build.sources.filters import Blocklist, Eligibility, resolve_licenses
from fdf_build.sources.metadata import format_line, parse_line
from fdf_build.sources.scan import ScanSummary, Scanner, scan_file
from fdf_build.sources.synthetic import synthetic_photo, write_yfcc_file

from .test_metadata import REAL_LINE
from .test_scan import fixture_lines

# tags as the file may hold them (URL-encoded), opt-outs and near misses: each must get the parsed photo's verdict
TAG_COLUMNS = [
    "no_cv", "No%5FCV", "n+o+c+v", "N-O-C-V", "nocvx", "xnocv", "no%2Ccv", "no,cv", "%6Eocv", "%E2%80%83no%E2%80%83cv",
    "caf%C3%A9,nocv", "caf%C3%A9,travel", "ｎｏｃｖ", "no:cv", "a:b=no_cv", "flickr%3Ano_cv", "no__cv+", "n%20o%0Ccv",
    "travel,vacation,canon", "", "noc,v", "no%0acv", "%", "%zz,nocv", "NOCV%", "noc%76", "n%6F%63%56", "x,no+c%2Dv",
]


def reference(lines: list[str], eligibility: Eligibility, limit=None) -> tuple[dict, list]:
    """What scan and build did before the fast scan: every line parsed into a Photo, then judged and counted."""
    s, eligible = ScanSummary(), []
    for index, line in enumerate(lines):
        if limit is not None and len(eligible) >= limit:
            break
        item = parse_line(line, index)
        s.lines += 1
        if isinstance(item, Malformed):
            s.malformed += 1
            if len(s.malformed_examples) < 20:
                s.malformed_examples.append({"line": item.line_number, "reason": item.reason})
            continue
        s.videos += item.is_video
        s.photos += not item.is_video
        s.licenses[item.license_url] += 1
        s._authors.add(item.user_nsid)
        reason = eligibility(item)
        if reason is None:
            s.eligible += 1
            s._eligible_authors.add(item.user_nsid)
            eligible.append(item)
        else:
            s.rejected[reason.value] += 1
    return s.to_dict(), eligible


def varied_lines(tmp_path: Path) -> list[str]:
    write_yfcc_file(tmp_path / "gen.tsv", 3000, owners=700, tags=5000)
    lines = (tmp_path / "gen.tsv").read_text().split("\n")[:-1]
    lines += fixture_lines()[0] + [REAL_LINE, REAL_LINE + "\r", REAL_LINE + "\r\r", "\t".join(["x"] * 23)]
    cols = REAL_LINE.split("\t")
    for i, tags in enumerate(TAG_COLUMNS):
        lines.append("\t".join(cols[:1] + [str(7 + i)] + cols[2:10] + [tags, tags if i % 2 else ""] + cols[12:]))
    webscope = cols[1:2] + cols[3:]
    lines += ["\t".join(webscope), "\t".join(webscope[:-1] + ["1"])]
    lines += ["\t".join(cols[:1] + ["9" * 400] + cols[2:]), "\t".join(["1" * 5000] + cols[1:]),
              "\t".join(cols[:1] + [str(1 << 63)] + cols[2:]), "\t".join(cols[:1] + [str((1 << 63) - 1)] + cols[2:]),
              "\t".join(cols[:1] + ["+12"] + cols[2:]), "\t".join(cols[:1] + ["1_2"] + cols[2:]), ""]
    return lines


@pytest.mark.parametrize("licenses", [("by", "by-sa", "by-nc", "by-nc-sa"), ("by-nc",), ("by-nd", "by-nc-nd")])
def test_the_fast_scan_counts_what_parsing_every_line_does(tmp_path, licenses):
    lines = varied_lines(tmp_path)
    blocked = synthetic_photo(17).photo_id
    eligibility = Eligibility(resolve_licenses(licenses), Blocklist(frozenset({"48600090482@N01"}), frozenset({blocked})))
    expected, expected_photos = reference(lines, eligibility)
    summary, scanner, photos = ScanSummary(), None, []
    scanner = Scanner(eligibility, summary)
    for start in range(0, len(lines), 1000):  # in blocks, as the reader hands them over
        photos += [line.photo() for line in scanner.count(lines[start:start + 1000])]
    assert summary.to_dict() == expected
    assert photos == expected_photos
    assert expected["eligible"] > 10 and expected["malformed"] >= 6
    assert expected["rejected"]["opted_out"] > 10 if "by-nc" in licenses else True  # the tag lines are by-nc


def test_ids_beyond_64_bits_are_malformed_lines_with_their_number(tmp_path):
    cols = REAL_LINE.split("\t")
    lines = [REAL_LINE, "\t".join(cols[:1] + ["9" * 400] + cols[2:]), "\t".join([str(1 << 64)] + cols[1:])]
    path = tmp_path / "ids.tsv"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["scan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["malformed"] == 2 and [e["line"] for e in out["malformed_examples"]] == [2, 3]
    assert "does not fit in 64 bits" in out["malformed_examples"][0]["reason"]
    assert len(out["malformed_examples"][0]["reason"]) < 100  # the 400 digits are not repeated
    assert parse_line("\t".join(cols[:1] + [str((1 << 63) - 1)] + cols[2:]), 0).photo_id == (1 << 63) - 1


def test_select_takes_the_eligible_photos_in_order_up_to_the_limit(tmp_path):
    lines = varied_lines(tmp_path)
    path = tmp_path / "all.tsv.bz2"
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    for limit in (None, 0, 1, 37, 2000):
        summary = ScanSummary()
        config = BuildConfig(metadata=str(path), out=tmp_path, limit=limit)
        photos = [line.photo() for line in select(config, summary, lambda *a: None)]
        expected, expected_photos = reference(lines, Eligibility(), limit)
        assert photos == expected_photos and summary.to_dict() == expected, limit


def test_stopping_early_ends_the_decompressor(tmp_path):
    path = tmp_path / "big.tsv.gz"
    write_yfcc_file(tmp_path / "big.tsv", 20_000, owners=100, tags=100)
    path.write_bytes(gzip.compress((tmp_path / "big.tsv").read_bytes(), 1))
    before = threading.active_count()
    for parallel in (False, True):
        with stream.line_blocks(path, parallel=parallel) as blocks:
            next(blocks)
        assert threading.active_count() == before


def corrupt(kind: str, how: str, data: bytes) -> bytes:
    packed = {"bz2": bz2.compress, "gz": gzip.compress}[kind](data)
    if how == "truncated":
        return packed[: len(packed) * 2 // 3]
    magic = {"bz2": 4, "gz": 10}[kind]  # BZh9 / the gzip header
    return packed[:magic] + bytes(range(256)) * 64


@pytest.fixture(params=["standard library", "child process"])
def decompressor(request, monkeypatch):
    """The reader's two ways: Python's bz2/gzip in a thread, or a decompressor process (lbzip2/pigz where
    installed; bzip2/gzip stand in for them here, so the path is tested on any machine)."""
    if request.param == "standard library":
        monkeypatch.setattr(stream, "FORMATS", tuple(f[:3] + ((),) for f in stream.FORMATS))
    else:
        tools = {"bzip2": ("bzip2", "-dc"), "gzip": ("gzip", "-dc")}
        if not all(shutil.which(t[0]) for t in tools.values()):
            pytest.skip("bzip2 or gzip is not installed")
        monkeypatch.setattr(stream, "FORMATS", tuple(f[:3] + ((tools[f[0]],),) for f in stream.FORMATS))
    return request.param


@pytest.mark.parametrize("kind", ["bz2", "gz"])
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_truncated_or_corrupt_file_stops_scan_with_one_line_after_the_counts(tmp_path, decompressor, kind, how):
    write_yfcc_file(tmp_path / "yfcc.tsv", 6000, owners=100, tags=100)
    path = tmp_path / f"yfcc.tsv.{kind}"
    path.write_bytes(corrupt(kind, how, (tmp_path / "yfcc.tsv").read_bytes()))
    result = CliRunner().invoke(cli, ["scan", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    read = int(result.stdout.splitlines()[0].removeprefix("lines: ").replace(",", ""))
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert error.startswith(f"Error: {path}: ") and f" of {path.stat().st_size:,} bytes, {read:,} lines): " in error
    assert error.endswith("the file is truncated or corrupt; download it again")
    assert ("ends early" in error) if how == "truncated" and decompressor == "standard library" else True
    assert (0 < read < 6000) if how == "truncated" else read == 0


def test_a_truncated_file_stops_the_build_after_what_was_read(tmp_path):
    lines = [format_line(synthetic_photo(i, license="by-nd")) for i in range(3000)]  # nothing to fetch
    data = bz2.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "yfcc.tsv.bz2"
    path.write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(cli, ["build", str(path), "--out", str(tmp_path / "out"), "--keypoints", "none"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (read,) = [line for line in result.stdout.splitlines() if line.startswith("metadata: ")]
    assert read.endswith(" 0 eligible photos")
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert error.startswith(f"Error: {path}: the bzip2 ") and error.endswith("download it again")
    assert not (tmp_path / "out" / "train").exists()


def test_scan_file_counts_what_the_cli_prints(tmp_path):
    lines, _ = fixture_lines()
    path = tmp_path / "y.tsv"
    path.write_text("\n".join(lines) + "\n")
    summary = scan_file(path, Eligibility(), ScanSummary())
    assert summary.to_dict() == reference(lines, Eligibility())[0]
