"""Nearest neighbours by embedding: exact search, with an index, the CLI and its errors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.table.schema import embedding_column
from vlcli.table.similar import build_index, resolve_id, similar
from vlcli.table.storage import Table


def with_embeddings(table: Table, dim: int = 16, seed: int = 0) -> tuple[list[str], np.ndarray]:
    ids = table.to_arrow(["id"]).column("id").to_pylist()
    vectors = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
    vectors[1] = vectors[0] + 0.01  # a planted near twin of row 0
    table.ensure_columns([embedding_column(dim).field()])
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    table.write_back(pa.table({"id": ids, "embedding": column}))
    return ids, vectors


def cosine_order(vectors: np.ndarray, i: int) -> list[int]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    dist = 1 - unit @ unit[i]
    return [j for j in np.argsort(dist, kind="stable") if j != i]


def test_exact_search_matches_brute_force(make_table: Callable[..., Table]) -> None:
    table = make_table(30)
    ids, vectors = with_embeddings(table)
    found = similar(table, ids[0], k=5)
    assert found["id"].to_list() == [ids[j] for j in cosine_order(vectors, 0)[:5]]
    assert found["id"][0] == ids[1] and found["distance"][0] < 1e-3
    assert list(found.columns) == ["id", "source", "distance"]


def test_index_keeps_the_nearest_twin(make_table: Callable[..., Table]) -> None:
    table = make_table(300, size=(8, 8))
    ids, _ = with_embeddings(table, dim=16)
    assert build_index(table) in table.vector_indices("embedding")
    assert similar(table, ids[0], k=3)["id"][0] == ids[1]


def test_errors_say_what_to_do(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    with pytest.raises(UsageError, match="vl crop"):
        similar(table, "x")
    with_embeddings(table)
    with pytest.raises(UsageError, match="no row with id"):
        similar(table, "nope")


def test_cli(make_table: Callable[..., Table]) -> None:
    table = make_table(10)
    ids, _ = with_embeddings(table)
    result = CliRunner().invoke(app, ["similar", table.path, ids[0], "-k", "2"])
    assert result.exit_code == 0, result.output
    assert ids[1] in result.output
    bad = CliRunner().invoke(app, ["similar", table.path, "nope"])
    assert bad.exit_code == 2 and "no row with id" in bad.stderr


def test_a_unique_id_prefix_names_the_row(make_table: Callable[..., Table]) -> None:
    table = make_table(10)
    ids, _ = with_embeddings(table)
    expected = similar(table, ids[0], k=3)
    assert similar(table, ids[0][:12], k=3).equals(expected)  # the review page shows 12 characters
    assert resolve_id(table, ids[3][:6]) == ids[3]
    result = CliRunner().invoke(app, ["similar", table.path, ids[0][:12], "-k", "2"])
    assert result.exit_code == 0, result.output
    assert ids[1] in result.output


def test_an_ambiguous_prefix_lists_the_matches(make_table: Callable[..., Table]) -> None:
    table = make_table(30)
    ids, _ = with_embeddings(table)
    # 30 hex ids over 16 first characters: some first character starts several of them
    first = max("0123456789abcdef", key=lambda c: sum(i.startswith(c) for i in ids))
    matching = sorted(i for i in ids if i.startswith(first))
    with pytest.raises(UsageError, match=f"matches {len(matching)} rows") as info:
        resolve_id(table, first)
    assert all(i in str(info.value) for i in matching[:2]) and "give more characters" in str(info.value)
    result = CliRunner().invoke(app, ["similar", table.path, first])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "matches" in result.stderr


def test_an_unknown_id_or_prefix_says_so(make_table: Callable[..., Table]) -> None:
    table = make_table(4)
    with_embeddings(table)
    with pytest.raises(UsageError, match="no row with id 'zz' or an id starting with it"):
        similar(table, "zz")
    with pytest.raises(UsageError, match="give an image ID"):
        similar(table, " ")
