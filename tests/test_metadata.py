import bz2
import dataclasses
import gzip
import io

import pytest

from fdf_build.records import Malformed, Photo
from fdf_build.sources import metadata
from fdf_build.sources.synthetic import synthetic_photo, yfcc_hash

# A real line of the 25-column release layout (values shaped like YFCC100M's, ids made up).
REAL_LINE = "\t".join(
    [
        "42",
        "6985418911",
        "4f5ef5d3c4ad7e3e2ea1d5b3f4c9e2a",
        "48600090482@N01",
        "Jos%C3%A9+Garc%C3%ADa",
        "2012-03-10 18:21:37.0",
        "1331493519",
        "Canon+EOS+7D",
        "Caf%C3%A9+au+lait",
        "A+%22quoted%22+description%2C+with+commas",
        "caf%C3%A9,new+york,no_cv",
        "vision%3Aoutdoor%3D099",
        "-73.98",
        "40.75",
        "16",
        "http://www.flickr.com/photos/48600090482@N01/6985418911/",
        "http://farm8.staticflickr.com/7038/6985418911_5d7c2f6b9c.jpg",
        "Attribution-NonCommercial License",
        "http://creativecommons.org/licenses/by-nc/2.0/",
        "7038",
        "8",
        "5d7c2f6b9c",
        "a1b2c3d4e5",
        "jpg",
        "0",
    ]
)


def test_parse_real_line_decodes_fields():
    p = metadata.parse_line(REAL_LINE + "\n", 0)
    assert isinstance(p, Photo)
    assert p.line_number == 42 and p.photo_id == 6985418911
    assert p.user_nickname == "José García"
    assert p.capture_device == "Canon EOS 7D"
    assert p.title == "Café au lait"
    assert p.description == 'A "quoted" description, with commas'
    assert p.user_tags == ("café", "new york", "no_cv")
    assert p.machine_tags == ("vision:outdoor=099",)
    assert p.license_url == "http://creativecommons.org/licenses/by-nc/2.0/"
    assert not p.is_video


def test_field_order_matches_columns():
    assert [f.name for f in dataclasses.fields(Photo)] == list(metadata.COLUMNS)


def test_format_line_round_trips():
    photo = synthetic_photo(7, user_tags=("a b", "ç,d"), title="tab-free, 100% + more")
    assert metadata.parse_line(metadata.format_line(photo), 0) == photo


def test_webscope_23_columns_numbered_by_position():
    cols = REAL_LINE.split("\t")
    webscope = "\t".join(cols[1:2] + cols[3:])
    p = metadata.parse_line(webscope, 17)
    assert isinstance(p, Photo)
    assert p.line_number == 17 and p.photo_hash == "" and p.title == "Café au lait"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda c: c[:10], "columns"),
        (lambda c: c + ["extra"], "columns"),
        (lambda c: c[:1] + ["12ab"] + c[2:], "photo id"),
        (lambda c: c[:-1] + ["2"], "marker"),
        (lambda c: c[:-1] + [""], "marker"),
        (lambda c: ["x"] + c[1:], "line number"),
    ],
)
def test_malformed_lines_say_why(mutate, reason):
    line = "\t".join(mutate(REAL_LINE.split("\t")))
    result = metadata.parse_line(line, 99)
    assert isinstance(result, Malformed)
    assert reason in result.reason
    assert result.line_number == 100  # 1-based, as an editor shows it


def test_malformed_reasons_quote_the_offending_field():
    cols = REAL_LINE.split("\t")
    assert metadata.parse_line("\t".join(["x7"] + cols[1:]), 0).reason == "non-numeric line number 'x7'"
    assert metadata.parse_line("\t".join(cols[:1] + ["12ab"] + cols[2:]), 0).reason == "non-numeric photo id '12ab'"
    assert metadata.parse_line("\t".join(cols[:-1] + ["2"]), 0).reason == "marker must be 0 or 1, got '2'"
    assert metadata.parse_line("\t".join(cols[:-1] + ["1"]) + "\r\n", 0).is_video
    assert not metadata.parse_line("\t".join(cols[:-1] + ["0"]) + "\n", 0).is_video


def test_read_photos_numbers_lines_from_one():
    lines = [REAL_LINE + "\n", "broken\n"]
    photo, broken = metadata.read_photos(lines)
    assert isinstance(photo, Photo) and broken.line_number == 2


def test_photo_hash_rule_is_unpadded_hex():
    url = "http://farm8.staticflickr.com/7038/6985418911_5d7c2f6b9c.jpg"
    import hashlib

    digest = hashlib.md5(url.encode()).digest()
    expected = "".join(format(b, "x") for b in digest)
    assert yfcc_hash(url) == expected
    assert len(expected) <= 32


def _write(tmp_path, name, text):
    path = tmp_path / name
    data = text.encode()
    if name.endswith(".bz2"):
        data = bz2.compress(data)
    elif name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["meta.tsv", "meta.bz2", "meta.gz", "compressed_without_suffix"])
def test_open_metadata_detects_compression(tmp_path, name):
    lines = [metadata.format_line(synthetic_photo(i)) for i in range(50)]
    text = "\n".join(lines) + "\n"
    if name == "compressed_without_suffix":
        path = tmp_path / name
        path.write_bytes(bz2.compress(text.encode()))
    else:
        path = _write(tmp_path, name, text)
    seen = []
    with metadata.open_metadata(path, on_bytes=seen.append) as f:
        photos = list(metadata.read_photos(f))
    assert [p.photo_id for p in photos] == [synthetic_photo(i).photo_id for i in range(50)]
    assert sum(seen) == path.stat().st_size


def test_source_size_is_the_files_bytes_and_unknown_for_stdin(tmp_path):
    path = tmp_path / "yfcc.tsv.bz2"
    path.write_bytes(b"x" * 1234)
    assert metadata.source_size(path) == 1234 and metadata.source_size(str(path)) == 1234
    assert metadata.source_size("-") is None


def test_open_metadata_reads_stdin(monkeypatch):
    text = metadata.format_line(synthetic_photo(3)) + "\n"
    fake_stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(text.encode())))
    monkeypatch.setattr("sys.stdin", fake_stdin)
    with metadata.open_metadata("-") as f:
        (photo,) = metadata.read_photos(f)
    assert photo == synthetic_photo(3)


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    good = metadata.format_line(synthetic_photo(1)).encode()
    bad = good.replace(b"Canon", b"Can\xff\xfeon")
    path = tmp_path / "m.tsv"
    path.write_bytes(bad + b"\n" + good + b"\n")
    with metadata.open_metadata(path) as f:
        items = list(metadata.read_photos(f))
    assert len(items) == 2
    assert items[0].capture_device == "Can\ufffd\ufffdon EOS 5D Mark II"


def test_photo_url_sizes_and_base_url():
    p = synthetic_photo(5, farm_id="8", server_id="7038", photo_id=6985418911, secret="aa", original_secret="bb",
                        original_extension="png", download_url="http://farm8.staticflickr.com/7038/6985418911_aa.jpg")
    assert metadata.photo_url(p) == "http://farm8.staticflickr.com/7038/6985418911_aa.jpg"
    assert metadata.photo_url(p, size="z") == "https://farm8.staticflickr.com/7038/6985418911_aa_z.jpg"
    assert metadata.photo_url(p, size="b") == "https://farm8.staticflickr.com/7038/6985418911_aa_b.jpg"
    assert metadata.photo_url(p, size="o") == "https://farm8.staticflickr.com/7038/6985418911_bb_o.png"
    assert (
        metadata.photo_url(p, size="c", base_url="http://127.0.0.1:8080/mirror/")
        == "http://127.0.0.1:8080/mirror/7038/6985418911_aa_c.jpg"
    )
    with pytest.raises(ValueError, match="unknown Flickr size"):
        metadata.photo_url(p, size="q")
