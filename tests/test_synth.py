"""`vl synth`: rows chosen, prompts, replies parsed or retried, errors recorded, resume, CLI; a scripted
generator for the logic, the stub server (real HTTP) and a tiny transformers model end to end."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlcli.backends import register
from vlcli.backends.textgen import GenerationRequest, GenerationResult, message_images, message_text
from vlcli.cli.app import app
from vlcli.errors import UsageError
from vlcli.steps.base import RunOptions
from vlcli.steps.synth.prompts import PLACEHOLDERS
from vlcli.steps.synth.step import SynthSettings, run_synth
from vlcli.table.schema import (
    BIN,
    BIN_SELECTED,
    CAPTION,
    CROP_BOX,
    FILTER_KEEP,
    ID,
    OBJECTS,
    OCR_TEXT,
    schema_of,
    status_column,
)
from vlcli.table.storage import Table

# --- a deterministic generator: replies chosen by the model name ---------------------------------


def items_for(request: GenerationRequest) -> dict[str, Any]:
    """A valid reply for the request's schema: as many items as it asks, MCQ or open."""
    assert request.json_schema is not None
    questions = request.json_schema["properties"]["questions"]
    mcq = "options" in questions["items"]["properties"]
    item: dict[str, Any] = {
        "question": "Which is it?",
        "answer": "B" if mcq else "42",
        "reasoning": "1. a 2. b 3. c",
    }
    if mcq:
        item["options"] = ["one", "two", "three", "four"]
    return {"questions": [item] * questions["minItems"]}


@dataclass
class Scripted:
    """`model` picks the behaviour: valid, fenced, garbage, flaky (garbage once, then valid), down, text-only."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    name: str = "scripted"
    calls: list[list[GenerationRequest]] = field(default_factory=list)
    closed: bool = False

    @property
    def supports_images(self) -> bool:
        return self.model != "text-only"

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        self.calls.append(list(requests))
        return [self._reply(r) for r in requests]

    def _reply(self, request: GenerationRequest) -> GenerationResult:
        if request.json_schema is None:
            return GenerationResult(text="A red square on a blue background, with a dog at the left.")
        asked_again = len(request.messages) > 1
        valid = json.dumps(items_for(request))
        if self.model == "down":
            return GenerationResult(error="HTTP 500 after 3 attempts: boom", attempts=3)
        if self.model == "garbage" or (self.model == "flaky" and not asked_again):
            return GenerationResult(text="I cannot do that, sorry.")
        if self.model == "fenced":
            return GenerationResult(text=f"Here you go:\n```json\n{valid}\n```\nEnjoy!")
        return GenerationResult(text=valid)

    def provenance(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def close(self) -> None:
        self.closed = True


BUILT: list[Scripted] = []


@register("generator", "scripted")
def _scripted(**options: Any) -> Scripted:
    gen = Scripted(model=options.pop("model"), options=options)
    BUILT.append(gen)
    return gen


def last() -> Scripted:
    return BUILT[-1]


def prompts_sent(gen: Scripted) -> list[str]:
    return [message_text(r.messages[0]) for call in gen.calls for r in call if r.json_schema is not None]


# --- tables -------------------------------------------------------------------------------------

FEATURES = [OCR_TEXT, OBJECTS, CAPTION, BIN, BIN_SELECTED, status_column("bin")]


def binned(table: Table, bins: list[str | None], selected: list[bool | None] | None = None) -> list[str]:
    """Give the rows bin-step features (text, two people and a dog, a caption) and the bins given."""
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    n = len(ids)
    table.ensure_columns(c.field() for c in FEATURES)
    person = {"box": [0, 0, 10, 10], "label": "person", "score": 0.9}
    dog = {"box": [50, 30, 64, 48], "label": "dog", "score": 0.8}
    rows = {
        "id": ids,
        "ocr_text": ["TOTAL 12.50\nTAX 1.25"] * n,
        "objects": [[person, person, dog]] * n,
        "caption": ["a receipt on a table"] * n,
        "bin": bins,
        "bin_selected": selected if selected is not None else [b is not None for b in bins],
        "bin_status": ["ok"] * n,
    }
    schema = pa.schema([ID.field(), *(c.field() for c in FEATURES)])
    table.write_back(pa.Table.from_pydict(rows, schema=schema))
    return ids


def synth_rows(table: Table) -> dict[str, dict[str, Any]]:
    cols = ["id", "synth_qa", "synth_raw", "synth_model", "synth_status"]
    cols += [c for c in ("synth_description",) if c in table.schema.names]
    return {r["id"]: r for r in table.to_arrow(cols).to_pylist()}


def scripted(model: str = "valid", **kw: Any) -> SynthSettings:
    return SynthSettings(backend="scripted", model=model, **kw)


# --- which rows -----------------------------------------------------------------------------------


def test_binned_rows_get_mcq_items(make_table: Callable[..., Table]) -> None:
    table = make_table(5)
    ids = binned(table, ["A", "B", "C", None, "A"], [True, True, True, None, False])
    report = run_synth(table, scripted())
    assert report.done == 3 and report.errors == 0
    rows = synth_rows(table)
    for i in ids[:3]:
        row = rows[i]
        assert row["synth_status"] == "ok" and row["synth_model"] == "scripted:valid"
        assert len(row["synth_qa"]) == 2  # --per-image defaults to 2 for mcq
        assert row["synth_qa"][0]["options"] == ["one", "two", "three", "four"]
        assert row["synth_qa"][0]["answer"] == "B"
        assert json.loads(row["synth_raw"])["questions"]
    assert rows[ids[3]]["synth_status"] is None and rows[ids[4]]["synth_status"] is None
    assert last().closed
    assert len(last().calls) == 1  # the whole batch in one generate() call


def test_without_bins_it_says_what_to_do(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    with pytest.raises(UsageError, match="vl bin"):
        run_synth(table, scripted())
    assert "synth_status" not in table.schema.names  # nothing was added


def test_all_takes_every_kept_row(make_table: Callable[..., Table]) -> None:
    table = make_table(4)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    table.ensure_columns([FILTER_KEEP.field()])
    table.write_back(pa.table({"id": ids, "filter_keep": [True, True, False, None]}))
    report = run_synth(table, scripted(all_rows=True, send_image=True))
    assert report.done == 3
    assert synth_rows(table)[ids[2]]["synth_status"] is None


def test_rows_with_nothing_known_are_skipped(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    report = run_synth(table, scripted(all_rows=True))
    assert report.skipped == 2 and not last().calls
    assert all(r["synth_status"].startswith("skipped: nothing known") for r in synth_rows(table).values())


# --- prompts --------------------------------------------------------------------------------------


def internal_names(table: Table) -> set[str]:
    """Column names a model must never read: every snake_case name of the table, and the step's own."""
    names = {n for n in table.schema.names if "_" in n}
    return names | {"synth_qa", "synth_raw", "synth_description", "bin_selected", "ocr_boxes", "crop_box"}


def test_prompts_carry_the_features_but_no_column_names(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    binned(table, ["A", "B", "C"])
    run_synth(table, scripted(mode="qa", describe=True))
    gen = last()
    sent = [message_text(m) for call in gen.calls for r in call for m in r.messages]
    assert len(sent) == 6  # 3 descriptions, then 3 questions
    for text in sent:
        for name in internal_names(table):
            assert name not in text, (name, text)
    questions = prompts_sent(gen)
    for text in questions:
        assert "TOTAL 12.50" in text and "a receipt on a table" in text
        assert "person x 2: top left, top left" in text and "dog x 1: bottom right" in text
        assert "A red square" in text  # the description feeds the questions
    # qa mode: one template per bin
    assert sum("computing" in t for t in questions) == 1
    assert sum("relative positions" in t for t in questions) == 1
    assert sum("commonsense" in t for t in questions) == 1


def test_prompt_override_and_its_errors(make_table: Callable[..., Table], tmp_path: Path) -> None:
    table = make_table(2)
    binned(table, ["A", "B"])
    template = tmp_path / "mine.txt"
    template.write_text(
        'Text: {{text}}\nAsk {{ count }} things. Reply {"questions": [...]}', encoding="utf-8"
    )
    run_synth(table, scripted(prompt=str(template), per_image=3))
    assert (
        prompts_sent(last()) == ['Text: TOTAL 12.50\nTAX 1.25\nAsk 3 things. Reply {"questions": [...]}'] * 2
    )
    assert all(len(r["synth_qa"]) == 3 for r in synth_rows(table).values())
    template.write_text("{{text}} {{ocr_text}}", encoding="utf-8")
    with pytest.raises(UsageError, match=r"unknown placeholder \{\{ocr_text\}\}"):
        run_synth(table, scripted(prompt=str(template)))
    with pytest.raises(UsageError, match="cannot read"):
        run_synth(table, scripted(prompt=str(tmp_path / "missing.txt")))


def test_every_placeholder_is_documented() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "synth.md").read_text(encoding="utf-8")
    for name in PLACEHOLDERS:
        assert "{{" + name + "}}" in docs


# --- images ------------------------------------------------------------------------------------------


def test_describe_sends_the_crop_as_a_bounded_jpeg(make_table: Callable[..., Table]) -> None:
    table = make_table(2, size=(400, 300))
    ids = binned(table, ["B", "C"])
    table.ensure_columns([CROP_BOX.field()])
    table.write_back(pa.table({"id": ids, "crop_box": pa.array([[100, 0, 400, 200], None], CROP_BOX.type)}))
    run_synth(table, scripted(describe=True, image_size=150))
    gen = last()
    describe_call, ask_call = gen.calls
    sizes = []
    for request in describe_call:
        (data,) = message_images(request.messages[0])
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG"
        sizes.append(img.size)
    assert sorted(sizes) == [(150, 100), (150, 113)]  # the crop (300x200) and the whole image (400x300)
    assert all(not message_images(r.messages[0]) for r in ask_call)  # text-only questions by default
    rows = synth_rows(table)
    assert all(r["synth_description"].startswith("A red square") for r in rows.values())
    # A rerun with --send-image reuses the descriptions and shows the questions' model the image.
    built = len(BUILT)
    report = run_synth(table, scripted(describe=True, send_image=True), RunOptions(retry_errors=True))
    assert report.pending == 0 and len(BUILT) == built  # nothing pending: no model is even loaded
    run_synth(table, scripted(describe=True, send_image=True), RunOptions(redo=True))
    (redo_describe, redo_ask) = last().calls
    assert len(redo_describe) == 2  # --redo describes again
    assert all(len(message_images(r.messages[0])) == 1 for r in redo_ask)


def test_images_need_a_backend_that_sees_them(make_table: Callable[..., Table]) -> None:
    table = make_table(1)
    binned(table, ["A"])
    with pytest.raises(UsageError, match="--describe needs a model that sees images"):
        run_synth(table, scripted("text-only", describe=True))
    with pytest.raises(UsageError, match="--send-image"):
        run_synth(table, scripted("text-only", send_image=True))
    run_synth(table, scripted("text-only", describe=True, describe_model="valid"))
    assert synth_rows(table)[next(iter(synth_rows(table)))]["synth_status"] == "ok"


# --- replies ----------------------------------------------------------------------------------------


def test_fenced_replies_parse(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    binned(table, ["A", "B", "C"])
    report = run_synth(table, scripted("fenced"))
    assert report.done == 3 and len(last().calls) == 1


def test_invalid_replies_are_asked_again_a_bounded_number_of_times(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    binned(table, ["A", "B", "C"])
    report = run_synth(table, scripted("garbage", max_retries=2))
    assert report.errors == 3
    gen = last()
    assert [len(c) for c in gen.calls] == [3, 3, 3]  # first ask + 2 retries, each batched
    again = gen.calls[1][0].messages
    assert again[1] == {"role": "assistant", "content": "I cannot do that, sorry."}
    assert "no JSON found" in again[2]["content"]
    for row in synth_rows(table).values():
        assert row["synth_status"] == "error: invalid reply: no JSON found"
        assert row["synth_raw"] == "I cannot do that, sorry." and row["synth_qa"] is None
    assert report.reasons == {"error: invalid reply": 3}


def test_a_retry_can_fix_a_reply(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    binned(table, ["A", "B"])
    report = run_synth(table, scripted("flaky", seed=7))
    assert report.done == 2
    first, second = last().calls
    assert (first[0].seed, second[0].seed) == (7, 8)  # a new seed, or a seeded model repeats itself
    assert all(r["synth_raw"].startswith('{"questions"') for r in synth_rows(table).values())


def test_transport_errors_are_recorded_and_retried_on_request(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    binned(table, ["A", "B"])
    report = run_synth(table, scripted("down"))
    assert report.errors == 2 and len(last().calls) == 1  # the backend already retried the transport
    assert {r["synth_status"] for r in synth_rows(table).values()} == {
        "error: HTTP 500 after 3 attempts: boom"
    }
    assert run_synth(table, scripted("valid")).pending == 0  # errors stay errors...
    assert run_synth(table, scripted("valid"), RunOptions(retry_errors=True)).done == 2  # ...unless asked


# --- resume and provenance -----------------------------------------------------------------------------


def test_limit_then_rerun_equals_one_run(make_table: Callable[..., Table], tmp_path: Path) -> None:
    first, whole = make_table(5, name="a.lance"), make_table(5, name="b.lance")
    for t in (first, whole):
        binned(t, ["A", "B", "C", "A", "B"])
    assert run_synth(first, scripted("valid", mode="qa"), RunOptions(limit=2)).processed == 2
    assert run_synth(first, scripted("valid", mode="qa")).processed == 3
    run_synth(whole, scripted("valid", mode="qa"))
    assert synth_rows(first) == synth_rows(whole)
    assert run_synth(first, scripted("valid", mode="qa")).pending == 0


def test_provenance_is_recorded(make_table: Callable[..., Table]) -> None:
    table = make_table(1)
    binned(table, ["A"])
    run_synth(table, scripted(temperature=0.2, seed=3))
    params = table.metadata()["provenance.synth"]["params"]
    assert params["backend"] == "scripted" and params["model"] == "valid" and params["mode"] == "mcq"
    assert params["per_image"] == 2 and params["temperature"] == 0.2 and params["seed"] == 3
    assert re.fullmatch(r"\*:[0-9a-f]{12}", params["templates"])
    assert params["generator"] == {"backend": "scripted", "model": "valid"}


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_runs_and_the_alias_works(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    binned(table, ["A", "B"])
    args = [table.path, "--backend", "scripted", "--model", "fenced", "--mode", "qa", "-q"]
    result = CliRunner().invoke(app, ["synth", *args])
    assert result.exit_code == 0, result.output
    assert "synth done: 2 ok" in result.output
    again = CliRunner().invoke(app, ["synthesize", *args, "--redo"])
    assert again.exit_code == 0 and "synth done: 2 ok" in again.output
    assert "synthesize" not in CliRunner().invoke(app, ["--help"]).output


def test_cli_usage_errors_are_one_line(make_table: Callable[..., Table], tmp_path: Path) -> None:
    table = make_table(1)
    bad = tmp_path / "bad.txt"
    bad.write_text("{{nope}}", encoding="utf-8")
    for extra, needle in (
        ([], "run `vl bin TABLE` first, or pass --all"),
        (["--all", "--prompt", str(bad)], "unknown placeholder {{nope}}"),
        (["--all", "--mode", "essay"], "--mode must be qa or mcq"),
    ):
        result = CliRunner().invoke(app, ["synth", table.path, "--backend", "scripted", *extra])
        assert result.exit_code == 2, result.output
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_status_counts_synth(make_table: Callable[..., Table]) -> None:
    from vlcli.review.status import table_status

    table = make_table(3)
    binned(table, ["A", "B", "C"])
    run_synth(table, scripted("garbage", max_retries=0), RunOptions(limit=2))
    synth = table_status(table).step("synth")
    assert (synth.done, synth.errors, synth.pending) == (0, 2, 1)
    assert synth.reasons == [("error: invalid reply", 2)]


# --- end to end: the openai backend over real HTTP, the transformers backend with a tiny model --------

KEY = "sk-test-7f3a9c1e5b2d4068"


def numbered(table: Table, bins: list[str]) -> list[str]:
    """Bin features whose text names the row ("ROW 3"), so a stub can answer each row its own way."""
    ids = binned(table, bins)
    texts = [f"ROW {i}" for i in range(len(ids))]
    schema = schema_of("id", "ocr_text")
    table.write_back(pa.Table.from_pydict({"id": ids, "ocr_text": texts}, schema=schema))
    return ids


def row_of(request: dict[str, Any]) -> int:
    text = " ".join(str(m.get("content")) for m in request["messages"])
    return int(re.search(r"ROW (\d+)", text).group(1))  # type: ignore[union-attr]


def test_stub_server_every_row_ends_ok_or_a_recorded_error(
    make_table: Callable[..., Table],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vlcli.testing.stub_server import StubServer

    table = make_table(7)
    ids = numbered(table, ["A", "B", "C", "A", "B", "C", "A"])
    seen: dict[int, int] = {}

    def script(request: dict[str, Any], n: int) -> str:
        row = row_of(request)
        seen[row] = seen.get(row, 0) + 1
        first = seen[row] == 1
        return {
            0: "json",
            1: "fenced",
            2: "garbage",  # always: an invalid reply after 1 + --max-retries asks
            3: "429" if first else "json",  # the backend retries the transport
            4: "500",  # always: a transport error
            5: "garbage" if first else "json",  # the step's re-ask fixes it
            6: "401",  # echoes the key it was given, as some hosted APIs do
        }[row]

    monkeypatch.setenv("VL_TEST_KEY", KEY)
    caplog.set_level("DEBUG")
    with StubServer(script=script, capacity=4) as stub:
        settings = SynthSettings(
            backend="openai",
            model="stub-model",
            base_url=stub.base_url,
            api_key_env="VL_TEST_KEY",
            concurrency=4,
            max_retries=2,
            backend_options={"backoff": 0.0, "max_retries": 2},
        )
        report = run_synth(table, settings)
        assert stub.authorizations and set(stub.authorizations) == {f"Bearer {KEY}"}
        assert stub.max_in_flight <= 4
    rows = synth_rows(table)
    status = {i: rows[ids[i]]["synth_status"] for i in range(7)}
    assert status[0] == status[1] == status[3] == status[5] == "ok"
    assert status[2].startswith("error: invalid reply: no complete JSON")  # the stub's garbage has a "{"
    assert status[4].startswith("error: HTTP 500 after 3 attempts")
    assert status[6].startswith("error: HTTP 401")
    assert seen == {0: 1, 1: 1, 2: 3, 3: 2, 4: 3, 5: 2, 6: 1}
    assert rows[ids[2]]["synth_raw"] and rows[ids[4]]["synth_raw"] is None
    assert all(len(rows[ids[i]]["synth_qa"]) == 2 for i in (0, 1, 3, 5))
    assert rows[ids[0]]["synth_model"] == "openai:stub-model"
    assert report.done == 4 and report.errors == 3
    # The key is nowhere: not in any column, the metadata, the files on disk, or the logs.
    everything = json.dumps(table.to_arrow([n for n in table.schema.names if n != "image"]).to_pylist())
    assert KEY not in everything and KEY not in json.dumps(table.metadata())
    assert "VL_TEST_KEY" in json.dumps(table.metadata())  # the variable's name is recorded, not its value
    for path in Path(table.path).rglob("*"):
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert KEY not in caplog.text and KEY not in out.out and KEY not in out.err


def test_stub_server_through_the_cli(
    make_table: Callable[..., Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlcli.testing.stub_server import StubServer

    table = make_table(3)
    binned(table, ["A", "B", "C"])
    monkeypatch.setenv("VL_TEST_KEY", KEY)
    with StubServer(capacity=2) as stub:
        args = ["synth", table.path, "--base-url", stub.base_url, "--model", "stub-model", "--api-key-env"]
        result = CliRunner().invoke(app, [*args, "VL_TEST_KEY", "--mode", "qa", "--all", "-q"])
    assert result.exit_code == 0, result.output
    assert "synth done: 3 ok" in result.output and KEY not in result.output
    assert all(r["synth_status"] == "ok" for r in synth_rows(Table.open(table.path)).values())


def test_transformers_backend_end_to_end(make_table: Callable[..., Table], tiny_causal_lm: str) -> None:
    table = make_table(3)
    binned(table, ["A", "B", "C"])
    settings = SynthSettings(
        backend="transformers", model=tiny_causal_lm, device="cpu", max_tokens=16, max_retries=1, seed=0
    )
    report = run_synth(table, settings)
    assert report.processed == 3
    for row in synth_rows(table).values():
        # A random model writes noise: the point is that every row ends with a recorded outcome.
        assert row["synth_status"] == "ok" or row["synth_status"].startswith("error: invalid reply")
        assert row["synth_raw"] is not None and row["synth_model"] == f"transformers:{tiny_causal_lm}"
    params = table.metadata()["provenance.synth"]["params"]
    assert params["generator"]["backend"] == "transformers"
    with pytest.raises(UsageError, match="--send-image"):
        run_synth(table, replace_settings(settings, send_image=True, all_rows=True), RunOptions(redo=True))


def replace_settings(settings: SynthSettings, **changes: Any) -> SynthSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)
