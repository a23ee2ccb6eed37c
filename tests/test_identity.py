"""A build's identity: what a resume must share with the run that started it (fdf_build.identity)."""

import hashlib
from pathlib import Path

import pytest

from fdf_build.config import BuildConfig
from fdf_build.identity import (EDGE, blocklist_entries, blocklist_from_entries, build_identity, differences,
                                file_identity, same_file)
from fdf_build.sources.filters import Blocklist

# sha256 of b"abc" (FIPS 180-2, appendix B.1) and of b"" : written down, not computed by the code under test
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_a_small_file_is_its_size_and_the_hash_of_all_of_it(tmp_path):
    (tmp_path / "a.tsv").write_bytes(b"abc")
    assert file_identity(tmp_path / "a.tsv") == {"name": "a.tsv", "size": 3, "head": SHA256_ABC, "tail": SHA256_ABC}
    (tmp_path / "empty.tsv").write_bytes(b"")
    assert file_identity(tmp_path / "empty.tsv") == {"name": "empty.tsv", "size": 0, "head": SHA256_EMPTY,
                                                     "tail": SHA256_EMPTY}


def test_a_large_file_is_hashed_at_both_ends_only(tmp_path):
    body = bytes(range(256)) * (3 * EDGE // 256)  # 3 MiB: head, an unhashed middle MiB, tail
    path = tmp_path / "big.tsv"
    path.write_bytes(body)
    identity = file_identity(path)
    assert identity["size"] == 3 * EDGE
    assert identity["head"] == hashlib.sha256(body[:EDGE]).hexdigest()
    assert identity["tail"] == hashlib.sha256(body[-EDGE:]).hexdigest()
    assert identity["head"] != hashlib.sha256(body[: EDGE + 1]).hexdigest()  # exactly EDGE bytes, not more


@pytest.mark.parametrize("edit", ["first byte", "last byte", "append", "truncate"])
def test_edits_at_either_end_or_of_the_length_change_the_identity(tmp_path, edit):
    body = bytearray(b"x" * (3 * EDGE))
    path = tmp_path / "m.tsv"
    path.write_bytes(body)
    before = file_identity(path)
    if edit == "first byte":
        body[0] = ord("y")
    elif edit == "last byte":
        body[-1] = ord("y")
    elif edit == "append":
        body += b"\n"
    else:
        del body[-1]
    path.write_bytes(body)
    assert not same_file(before, file_identity(path))


def test_a_renamed_file_is_the_same_file(tmp_path):
    (tmp_path / "a.tsv").write_bytes(b"line\n" * 1000)
    before = file_identity(tmp_path / "a.tsv")
    (tmp_path / "a.tsv").rename(tmp_path / "b.tsv")
    assert same_file(before, file_identity(tmp_path / "b.tsv"))


def identity_of(tmp_path, *, content=b"a\tb\n", blocklist=(), weights=None, **settings):
    meta = tmp_path / f"meta-{hashlib.sha256(content).hexdigest()[:6]}.tsv"
    meta.write_bytes(content)
    config = BuildConfig(metadata=str(meta), **{"out": tmp_path / "out", **settings})
    return build_identity(config.output_settings(), meta, Blocklist.from_lines(blocklist), weights or {})


def test_the_same_inputs_have_no_differences(tmp_path):
    a = identity_of(tmp_path, blocklist=["1@N00", "42"])
    assert differences(a, identity_of(tmp_path, blocklist=["42", "# a comment", "1@N00"])) == []


def test_each_difference_is_named(tmp_path):
    then = identity_of(tmp_path, blocklist=["1@N00", "2@N00", "42"], min_face=64)
    now = identity_of(tmp_path, content=b"other\n", blocklist=["2@N00"], min_face=32, expand=1.5)
    found = differences(then, now)
    assert found[:2] == ["expand was 1.4, now 1.5", "min_face was 64, now 32"]
    assert found[2].startswith("the metadata file is another one: meta-") and "(4 bytes" in found[2]
    assert "(6 bytes" in found[2]
    assert found[3] == "2 entries were removed from the blocklist (1@N00, 42)"
    assert len(found) == 4


def test_a_grown_blocklist_is_no_difference_a_shrunk_one_is(tmp_path):
    small = identity_of(tmp_path, blocklist=["1@N00"])
    grown = identity_of(tmp_path, blocklist=["1@N00", "2@N00", "99"])
    assert differences(small, grown) == []
    assert differences(grown, small) == ["2 entries were removed from the blocklist (2@N00, 99)"]
    assert differences(small, identity_of(tmp_path)) == ["1 entry was removed from the blocklist (1@N00)"]
    many = identity_of(tmp_path, blocklist=[f"{i}@N00" for i in range(5)])
    assert differences(many, identity_of(tmp_path)) == [
        "5 entries were removed from the blocklist (0@N00, 1@N00, 2@N00, ...)"]
    three = identity_of(tmp_path, blocklist=[f"{i}@N00" for i in range(3)])  # all three shown: no "..."
    assert differences(three, identity_of(tmp_path)) == [
        "3 entries were removed from the blocklist (0@N00, 1@N00, 2@N00)"]
    four = identity_of(tmp_path, blocklist=[f"{i}@N00" for i in range(4)])
    assert differences(four, identity_of(tmp_path)) == [
        "4 entries were removed from the blocklist (0@N00, 1@N00, 2@N00, ...)"]


def test_licenses_are_compared_as_the_set_they_allow(tmp_path):
    base = identity_of(tmp_path, licenses=("by", "by-sa"))
    assert differences(base, identity_of(tmp_path, licenses=("by-sa", "http://creativecommons.org/licenses/by/2.0"))) == []
    (found,) = differences(base, identity_of(tmp_path, licenses=("by",)))
    assert found.startswith("licenses was ") and found.endswith("now creativecommons.org/licenses/by/2.0")


@pytest.mark.parametrize("setting, value", [
    ("size", 128), ("expand", 2.0), ("min_face", 32), ("keypoints", "mediapipe"), ("detector_threshold", 0.6),
    ("keypoints_outside", "nan"), ("unmatched", "keep"), ("limit", 10), ("shard_size", 5), ("flickr_size", "b"),
    ("detect_max_side", 640), ("max_bytes", 1000), ("val_fraction", 0.5), ("fp16", True),
])
def test_every_setting_that_changes_the_output_is_a_difference(tmp_path, setting, value):
    (found,) = differences(identity_of(tmp_path), identity_of(tmp_path, **{setting: value}))
    assert found.startswith(f"{setting} was ") and found.endswith(f"now {value}")


@pytest.mark.parametrize("setting, value", [
    ("workers", 2), ("per_host", 1), ("timeout", 5.0), ("retries", 0), ("rate", 1.0), ("retry_budget", 3),
    ("base_url", "http://127.0.0.1:1"), ("crawl_date", "2020-01-01"), ("batch_size", 2), ("device", "cuda"),
    ("weights_dir", Path("/elsewhere")), ("executor", "ray"), ("out", Path("/other")),
])
def test_settings_that_do_not_change_the_output_are_no_difference(tmp_path, setting, value):
    assert differences(identity_of(tmp_path), identity_of(tmp_path, **{setting: value})) == []


def test_other_weights_are_a_difference_moved_ones_are_not(tmp_path):
    for name, data in (("a.pth", b"weights one"), ("b.pth", b"weights one"), ("c.pth", b"weights two")):
        (tmp_path / name).write_bytes(data)
    then = identity_of(tmp_path, weights={"dsfd": tmp_path / "a.pth"})
    assert differences(then, identity_of(tmp_path, weights={"dsfd": tmp_path / "b.pth"})) == []
    (found,) = differences(then, identity_of(tmp_path, weights={"dsfd": tmp_path / "c.pth"}))
    assert found.startswith("the dsfd weights are another file: a.pth (11 bytes") and "c.pth (11 bytes" in found


def test_standard_input_is_not_a_file(tmp_path):
    config = BuildConfig(metadata="-", out=tmp_path)
    stdin = build_identity(config.output_settings(), "-", Blocklist(), {})
    assert stdin["metadata"] == {"name": "-"}
    assert differences(stdin, stdin) == []
    (found,) = differences(identity_of(tmp_path), stdin)
    assert found.endswith("then, standard input now")


def test_blocklist_entries_are_sorted_and_typed():
    entries = blocklist_entries(Blocklist.from_lines(["b@N00", "10", "a@N00", "9"]))
    assert entries == {"nsids": ["a@N00", "b@N00"], "photo_ids": [9, 10]}


def test_blocklist_entries_round_trip():
    blocklist = Blocklist.from_lines(["b@N00", "10", "a@N00"])
    assert blocklist_from_entries(blocklist_entries(blocklist)) == blocklist
    assert blocklist_from_entries({"nsids": [], "photo_ids": []}) == Blocklist()


def test_messages_name_values_and_short_hashes(tmp_path):
    three = identity_of(tmp_path, blocklist=["1@N00", "2@N00", "3@N00"])
    assert differences(three, identity_of(tmp_path)) == ["3 entries were removed from the blocklist (1@N00, 2@N00, 3@N00)"]
    assert differences(identity_of(tmp_path), identity_of(tmp_path, limit=5)) == ["limit was unset, now 5"]
    (found,) = differences(identity_of(tmp_path), identity_of(tmp_path, content=b"abc"))
    assert found.endswith(f"meta-{hashlib.sha256(b'abc').hexdigest()[:6]}.tsv (3 bytes, head {SHA256_ABC[:8]}, "
                          f"tail {SHA256_ABC[:8]}) now")


def test_a_setting_only_one_side_has_is_a_difference(tmp_path):
    then, now = identity_of(tmp_path), identity_of(tmp_path)
    now["settings"]["new_setting"] = 1
    assert differences(then, now) == ["new_setting was unset, now 1"]
