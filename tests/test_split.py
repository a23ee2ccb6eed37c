from fdf_build.split import split_of


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
