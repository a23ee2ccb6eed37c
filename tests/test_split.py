import pytest

from fdf_build.split import split_of

# The documented rule: val when the first 8 bytes of sha256(NSID), read big-endian, over 2^64 fall under the
# validation fraction. These hash prefixes were computed once with coreutils (printf %s NSID | sha256sum), not by
# the code under test; the 0.026 threshold (FDF256's share) is 0x06a7ef9d... .
KNOWN = {
    "25@N00": "0211eb9a695b5e65",           # 0.0081
    "63@N00": "065c1d2fc5680436",           # 0.0248: just under 0.026
    "393@N00": "06643e48f2ba26f8",          # 0.0250
    "37@N00": "07f862d7d7b379e5",           # 0.0311: just over 0.026
    "12345678@N00": "355950e353013157",     # 0.2084
    "48600090482@N01": "793d92ba574e9634",  # 0.4736
    "7240297@N05": "9b28ffc581fdedb5",      # 0.6061
}
# their splits, written down from the prefixes above
EXPECTED = {
    0.026: {"25@N00": "val", "63@N00": "val", "393@N00": "val", "37@N00": "train", "12345678@N00": "train",
            "48600090482@N01": "train", "7240297@N05": "train"},
    0.3: {"25@N00": "val", "63@N00": "val", "393@N00": "val", "37@N00": "val", "12345678@N00": "val",
          "48600090482@N01": "train", "7240297@N05": "train"},
    0.5: {"25@N00": "val", "63@N00": "val", "393@N00": "val", "37@N00": "val", "12345678@N00": "val",
          "48600090482@N01": "val", "7240297@N05": "train"},
}


@pytest.mark.parametrize("fraction", sorted(EXPECTED))
def test_known_authors_land_in_their_written_down_split(fraction):
    assert {nsid: split_of(nsid, fraction) for nsid in KNOWN} == EXPECTED[fraction]


def test_the_boundary_is_the_hash_position_itself():
    """Each known author sits exactly at its hash position: val just above it, train at it and below."""
    for nsid, prefix in KNOWN.items():
        position = int(prefix, 16) / 2**64
        assert split_of(nsid, position) == "train"  # val needs position < fraction, strictly
        assert split_of(nsid, position + 1e-9) == "val"


def test_split_is_a_function_of_the_nsid_only():
    nsids = [f"{i}@N0{i % 8}" for i in range(2000)]
    first = [split_of(n, 0.1) for n in nsids]
    assert first == [split_of(n, 0.1) for n in reversed(nsids)][::-1]


def test_split_fraction_matches_over_many_authors():
    n = 40_000
    val = sum(split_of(f"{i}@N00", 0.026) == "val" for i in range(n))
    assert abs(val / n - 0.026) < 0.004


def test_split_extremes_and_growth_never_moves_an_author():
    nsids = [f"author{i}" for i in range(500)]
    assert {split_of(n, 0.0) for n in nsids} == {"train"}
    assert {split_of(n, 1.0) for n in nsids} == {"val"}
    # raising the fraction only moves authors from train to val, never back
    small = {n for n in nsids if split_of(n, 0.05) == "val"}
    large = {n for n in nsids if split_of(n, 0.2) == "val"}
    assert small <= large and len(large) > len(small)
