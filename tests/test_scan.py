import bz2
import gzip
import json

import pytest
from click.testing import CliRunner

from fdf_build.cli.main import cli
from fdf_build.sources.filters import LICENSES
from fdf_build.sources.metadata import format_line
from fdf_build.sources.synthetic import synthetic_photo


def fixture_lines():
    """A metadata file whose every count is known by construction."""
    lines, i = [], 0

    def add(**kw):
        nonlocal i
        lines.append(format_line(synthetic_photo(i, **kw)))
        i += 1

    # 3 photos of each of the 6 licenses, by 2 authors per license
    for code in LICENSES:
        for k in range(3):
            add(license=code, nsid=f"author-{code}-{k % 2}")
    add(license="by", marker=1, nsid="video-maker")  # eligible license, but a video
    add(license="by-nd", marker=1, nsid="video-maker")
    add(license="by", user_tags=("No_CV",), nsid="opt-out-1")
    add(license="by-sa", machine_tags=("privacy:no-cv=1",), nsid="opt-out-2")
    add(license="by-nc", nsid="blocked@N00")
    add(license="by-nc", nsid="blocked@N00")
    add(license="by-nc-sa", nsid="fine-author")  # photo id blocked below
    blocked_photo_id = synthetic_photo(i - 1).photo_id
    lines.insert(5, "only\tthree\tcolumns")
    lines.insert(9, "")  # an empty line is a malformed line too
    lines.append("\t".join(format_line(synthetic_photo(999)).split("\t")[:-1] + ["7"]))  # bad marker
    return lines, blocked_photo_id


EXPECTED = {
    "lines": 28,
    "photos": 18 + 5,
    "videos": 2,
    "malformed": 3,
    "eligible": 12 - 0,  # 4 allowed licenses x 3 photos
    "rejected": {"license_not_allowed": 6, "video": 2, "opted_out": 2, "blocklisted": 3},
    # 12 license authors + video-maker + 2 opt-outs + blocked + fine-author
    "authors": 12 + 1 + 2 + 1 + 1,
    "eligible_authors": 8,
}


@pytest.fixture
def blocklist(tmp_path):
    _, blocked_photo_id = fixture_lines()
    path = tmp_path / "blocklist.txt"
    path.write_text(f"# removal requests\nblocked@N00\n{blocked_photo_id}  # by mail\n")
    return path


@pytest.mark.parametrize("suffix", [".tsv", ".tsv.bz2", ".tsv.gz"])
def test_scan_json_exact_counts(tmp_path, blocklist, suffix):
    lines, _ = fixture_lines()
    data = ("\n".join(lines) + "\n").encode()
    data = {".tsv": data, ".tsv.bz2": bz2.compress(data), ".tsv.gz": gzip.compress(data)}[suffix]
    path = tmp_path / f"yfcc{suffix}"
    path.write_bytes(data)
    result = CliRunner().invoke(cli, ["scan", str(path), "--json", "--blocklist", str(blocklist)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key, value in EXPECTED.items():
        assert out[key] == value, key
    assert sum(out["licenses"].values()) == out["photos"] + out["videos"]
    assert out["licenses"][LICENSES["by"]] == 3 + 1 + 1
    assert out["lines"] == out["photos"] + out["videos"] + out["malformed"]
    assert out["eligible"] + sum(out["rejected"].values()) == out["photos"] + out["videos"]
    assert [e["line"] for e in out["malformed_examples"]] == [6, 10, 28]


def test_scan_text_output_and_narrowed_licenses(tmp_path):
    lines, _ = fixture_lines()
    path = tmp_path / "yfcc.tsv"
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["scan", str(path), "--licenses", "by"])
    assert result.exit_code == 0, result.output
    assert "eligible: 3\n" in result.stdout
    assert "malformed line 10: expected 25 columns, got 1" in result.stdout


def test_scan_stdin(tmp_path):
    lines, _ = fixture_lines()
    result = CliRunner().invoke(cli, ["scan", "-", "--json"], input=bz2.compress(("\n".join(lines) + "\n").encode()))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["lines"] == 28


def test_scan_bad_input_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "missing.tsv")])
    assert result.exit_code == 2 and "does not exist" in result.output
    path = tmp_path / "y.tsv"
    path.write_text("")
    result = CliRunner().invoke(cli, ["scan", str(path), "--licenses", "cc0"])
    assert result.exit_code == 2 and "unknown license 'cc0'" in result.output
