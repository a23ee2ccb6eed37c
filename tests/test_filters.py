import pytest

from fdf_build.records import SkipReason
from fdf_build.sources.filters import (DEFAULT_LICENSES, LICENSES, Blocklist, Eligibility, is_opt_out_tag, license_code,
                                       resolve_licenses)
from fdf_build.sources.synthetic import synthetic_photo


@pytest.mark.parametrize("code", list(LICENSES))
def test_default_policy_allows_exactly_the_derivative_licenses(code):
    reason = Eligibility()(synthetic_photo(1, license=code))
    if code in DEFAULT_LICENSES:
        assert reason is None
    else:
        assert reason is SkipReason.LICENSE_NOT_ALLOWED
        assert code.endswith("nd")


def test_unknown_and_missing_license_refused():
    assert Eligibility()(synthetic_photo(1, license_url="")) is SkipReason.LICENSE_NOT_ALLOWED
    assert (
        Eligibility()(synthetic_photo(1, license_url="http://creativecommons.org/licenses/by/4.0/"))
        is SkipReason.LICENSE_NOT_ALLOWED
    )


def test_license_url_matching_ignores_scheme_www_case_and_slash():
    assert license_code("https://www.CreativeCommons.org/licenses/by-sa/2.0") == "by-sa"
    assert Eligibility()(synthetic_photo(1, license_url="https://creativecommons.org/licenses/by/2.0")) is None


def test_licenses_can_narrow_and_widen():
    narrow = Eligibility(licenses=resolve_licenses(["by"]))
    assert narrow(synthetic_photo(1, license="by")) is None
    assert narrow(synthetic_photo(1, license="by-nc")) is SkipReason.LICENSE_NOT_ALLOWED
    wide = Eligibility(licenses=resolve_licenses(["by", "by-nd", "http://example.org/my-license/"]))
    assert wide(synthetic_photo(1, license="by-nd")) is None
    assert wide(synthetic_photo(1, license_url="http://example.org/my-license")) is None


def test_resolve_licenses_rejects_nonsense():
    with pytest.raises(ValueError, match="^no license given: at least one license must be allowed$"):
        resolve_licenses(["", " "])
    with pytest.raises(ValueError, match=r"^unknown license 'cc0'; use a license URL or one of: by, by-sa, by-nc, "
                                         r"by-nc-sa, by-nd, by-nc-nd$"):
        resolve_licenses(["cc0"])


def test_blank_license_specs_are_skipped_not_the_end():
    assert resolve_licenses(["by", " ", "", "by-sa"]) == resolve_licenses(["by", "by-sa"])
    assert len(resolve_licenses(["by", " ", "", "by-sa"])) == 2


@pytest.mark.parametrize(
    "tag, opted_out",
    [
        ("no_cv", True),
        ("NO_CV", True),
        ("nocv", True),
        ("no-cv", True),
        ("no cv", True),
        ("flickr:no_cv", True),
        ("privacy:cv=no_cv", True),
        ("novice", False),
        ("cv", False),
        ("no_cvs", False),
        ("nocvid", False),
    ],
)
def test_opt_out_tags(tag, opted_out):
    assert is_opt_out_tag(tag) is opted_out


def test_opt_out_in_user_or_machine_tags():
    elig = Eligibility()
    assert elig(synthetic_photo(1, user_tags=("beach", "No_CV"))) is SkipReason.OPTED_OUT
    assert elig(synthetic_photo(1, machine_tags=("dc:no-cv=1",))) is SkipReason.OPTED_OUT


def test_video_rejected_before_anything_else():
    assert Eligibility()(synthetic_photo(1, marker=1, license="by-nd")) is SkipReason.VIDEO


def test_blocklist_file(tmp_path):
    path = tmp_path / "blocklist.txt"
    path.write_text("# removal requests\n12345@N00  # asked 2026-01-02\n\n2000000007\n  99@N01\n")
    bl = Blocklist.from_file(path)
    assert bl.nsids == {"12345@N00", "99@N01"} and bl.photo_ids == {2000000007}
    elig = Eligibility(blocklist=bl)
    assert elig(synthetic_photo(1, nsid="12345@N00")) is SkipReason.BLOCKLISTED
    assert elig(synthetic_photo(7)) is SkipReason.BLOCKLISTED
    assert elig(synthetic_photo(8)) is None


def test_a_blocklist_typed_with_a_lower_case_nsid_still_blocks_the_owner(tmp_path):
    """Flickr writes 12345@N00; people type 12345@n00. The privacy rules must not depend on the case of @N."""
    (tmp_path / "blocklist.txt").write_text("12345@n00\n")
    bl = Blocklist.from_file(tmp_path / "blocklist.txt")
    assert Eligibility(blocklist=bl)(synthetic_photo(1, nsid="12345@N00")) is SkipReason.BLOCKLISTED
    assert bl.lists("12345@N00") and bl.lists("12345@n00") and not bl.lists("12345@N01") and not bl.lists("7")


def test_blocklists_join_owners_and_photos_of_both():
    a = Blocklist(frozenset({"1@N00"}), frozenset({7}))
    b = Blocklist(frozenset({"2@N01", "1@N00"}), frozenset({8}))
    both = a | b
    assert both.nsids == {"1@N00", "2@N01"} and both.photo_ids == {7, 8} and len(both) == 4
    assert (a | Blocklist()) == a and (Blocklist() | b) == b


def test_face_size_filter_needs_both_sides_and_keeps_the_boundary():
    import numpy as np

    from fdf_build.records import Face
    from fdf_build.sources.filters import face_large_enough

    def face(w, h):
        return Face(box=np.array([10, 20, 10 + w, 20 + h], np.float32), score=0.9,
                    keypoints=np.full((7, 2), np.nan, np.float32))

    assert face_large_enough(face(64, 64), 64) and face_large_enough(face(200, 64), 64)
    assert not face_large_enough(face(63.9, 100), 64) and not face_large_enough(face(100, 63.9), 64)


def test_eligibility_from_options_reads_both(tmp_path):
    (tmp_path / "b.txt").write_text("x@N00  # asked\n123 # a photo # with two hashes\n\n", encoding="utf-8")
    elig = Eligibility.from_options(("by",), tmp_path / "b.txt")
    assert elig(synthetic_photo(1, nsid="x@N00", license="by")) is SkipReason.BLOCKLISTED
    assert elig(synthetic_photo(1, nsid="y@N00", license="by-sa")) is SkipReason.LICENSE_NOT_ALLOWED
    assert elig(synthetic_photo(1, nsid="y@N00", license="by")) is None
    assert len(elig.blocklist) == 2 and elig.blocklist.photo_ids == {123}
    assert Eligibility.from_options(("by",), None).blocklist == Blocklist()
    (tmp_path / "u.txt").write_bytes("münchen@N00\n".encode("utf-8"))
    assert Blocklist.from_file(tmp_path / "u.txt").nsids == {"münchen@N00"}
