"""Bin quotas and order on fixed feature tables (property tests), and the threshold rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlcli.errors import UsageError
from vlcli.steps.bin.rules import BinRules, Features, assign, quotas, threshold_bin

maybe_float = st.one_of(st.none(), st.floats(min_value=0, max_value=1, allow_nan=False))
maybe_int = st.one_of(st.none(), st.integers(min_value=0, max_value=30))


@st.composite
def feature_tables(draw: st.DrawFn) -> Features:
    n = draw(st.integers(min_value=0, max_value=60))
    ids = [f"{i:04x}" for i in draw(st.permutations(range(n)))]
    col = lambda s: [draw(s) for _ in range(n)]  # noqa: E731
    return Features(
        ids,
        col(maybe_int),
        col(maybe_float),
        col(maybe_int),
        col(maybe_int),
        col(maybe_float),
        col(maybe_float),
    )


ratio_triples = st.tuples(*[st.floats(min_value=0, max_value=0.5) for _ in range(3)]).filter(
    lambda r: sum(r) <= 1
)


@given(feature_tables(), ratio_triples)
def test_rank_quotas_add_up_and_no_row_is_in_two_bins(
    features: Features, ratios: tuple[float, float, float]
) -> None:
    out = assign(features, BinRules(ratios=ratios))
    n = len(features.ids)
    assert out.quotas == quotas(n, ratios)
    for b in "ABC":
        assert out.counts[b] == min(out.quotas[b], out.counts[b])
    assert sum(out.counts.values()) == sum(b is not None for b in out.bins) <= n
    assert sum(out.quotas.values()) <= n
    # ranks filled in order: A takes its full quota whenever there are enough rows
    assert out.counts["A"] == min(out.quotas["A"], n)


@given(feature_tables())
def test_rank_order_is_respected(features: Features) -> None:
    out = assign(features, BinRules())
    key = lambda v: float("-inf") if v is None else v  # noqa: E731
    a = [i for i, b in enumerate(out.bins) if b == "A"]
    rest = [i for i, b in enumerate(out.bins) if b != "A"]
    if a and rest:
        assert min(key(features.text_area[i]) for i in a) >= max(key(features.text_area[i]) for i in rest)
    b_rows = [i for i, b in enumerate(out.bins) if b == "B"]
    later = [i for i, b in enumerate(out.bins) if b not in ("A", "B")]
    if b_rows and later:
        assert min(key(features.num_objects[i]) for i in b_rows) >= max(
            key(features.num_objects[i]) for i in later
        )


def test_seed_quotas_example() -> None:
    n = 10
    features = Features(
        ids=[f"{i}" for i in range(n)],
        text_boxes=[0] * n,
        text_area=[0.9, 0.8, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        num_objects=[0, 0, 0, 0, 9, 8, 7, 1, 0, 0],
        num_classes=[0] * n,
        dispersion=[0.0] * n,
        clip_score=[0.1] * 8 + [0.9, 0.2],
    )
    out = assign(features, BinRules())
    assert out.bins == ["A", "A", "A", "A", "B", "B", "B", "B", "C", "C"]
    short = assign(features, BinRules(dataset_size=20))
    # like the seed, ranks fill A first whatever the values: B and C get what is left
    assert short.quotas == {"A": 8, "B": 8, "C": 4} and short.shortfall == {"B": 6, "C": 4}


def test_threshold_rule_is_the_seeds() -> None:
    f = Features(
        ids=["a", "b", "c", "d", "e", "f"],
        text_boxes=[3, 0, 0, 0, 0, None],
        text_area=[0.0, 0.25, 0.0, 0.0, 0.0, None],
        num_objects=[0, 0, 6, 0, 0, None],
        num_classes=[0, 0, 0, 4, 0, None],
        dispersion=[0.0, 0.0, 0.0, 0.0, 0.31, None],
        clip_score=[None] * 6,
    )
    rules = BinRules(rule="threshold")
    assert [threshold_bin(f, i, rules) for i in range(6)] == ["A", "A", "B", "B", "B", "C"]
    out = assign(f, BinRules(rule="threshold", ratios=(0.2, 0.2, 0.2)))
    assert out.counts == {"A": 1, "B": 1, "C": 1} and out.bins == ["A", "A", "B", "B", "B", "C"]


def test_bad_rules_name_the_flag() -> None:
    with pytest.raises(UsageError, match="--ratios"):
        BinRules(ratios=(0.5, 0.5, 0.5))
    with pytest.raises(UsageError, match="--rule"):
        BinRules(rule="vibes")  # type: ignore[arg-type]
