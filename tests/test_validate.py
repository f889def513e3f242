"""`vl validate`: rules over the stored Q/A, re-thresholding, duplicates, model checks, resume, CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from vlcli.backends import register
from vlcli.backends.textgen import GenerationRequest, GenerationResult, message_images, message_text
from vlcli.cli.app import app
from vlcli.review.status import table_status
from vlcli.steps.base import RunOptions
from vlcli.steps.synth.qa import LETTERS, QAItem
from vlcli.steps.validate.model_checks import CheckSettings
from vlcli.steps.validate.rules import ImageContext, ValidationRules, check_item
from vlcli.steps.validate.step import run_validate
from vlcli.table.schema import CAPTION, FILTER_KEEP, OBJECTS, OCR_TEXT, SYNTH_QA, status_column
from vlcli.table.storage import Table

FEATURES = {
    "ocr_text": "BREAD 4 DOLLARS\nMENU coffee 2 sandwich 7 salad 6 juice 3",
    "objects": [{"box": [0, 0, 5, 5], "label": "person", "score": 0.9}],
    "caption": "a bakery with a red sign",
}
CONTEXT = ImageContext.from_features(FEATURES["ocr_text"], ["person"], FEATURES["caption"])
TAGS = ["rye", "wheat", "corn", "oat", "spelt", "barley", "millet", "sourdough", "brioche", "bagel"]
MENU_OPTIONS = ["Coffee", "Sandwich", "Salad", "Juice"]


def open_item(tag: str) -> QAItem:
    return QAItem(
        question=f"What is the price of the {tag} loaf on the red bakery sign?",
        answer="4 dollars",
        reasoning=f"The red bakery sign lists the {tag} loaf at 4 dollars, so the {tag} loaf costs 4 dollars.",
    )


def mcq_item(tag: str, truth: str = "Sandwich") -> QAItem:
    return QAItem(
        question=f"Which item on the {tag} menu board costs the most?",
        options=list(MENU_OPTIONS),
        answer=LETTERS[MENU_OPTIONS.index(truth)],
        reasoning=(
            f"1. The {tag} menu board lists coffee at 2, sandwich at 7, salad at 6 and juice at 3. "
            f"2. Comparing the prices, 7 is the largest. 3. So the {truth.lower()} costs the most."
        ),
    )


def write_qa(
    table: Table, rows: dict[str, tuple[str | None, list[QAItem] | None]], features: bool = True
) -> None:
    """Fill synth_qa / synth_status (and the bin features) directly, as `vl synth` and `vl bin` would."""
    cols = [SYNTH_QA, status_column("synth")] + ([OCR_TEXT, OBJECTS, CAPTION] if features else [])
    table.ensure_columns(c.field() for c in cols)
    ids = list(rows)
    data: dict[str, Any] = {
        "id": ids,
        "synth_qa": [None if rows[i][1] is None else [q.to_row() for q in rows[i][1]] for i in ids],
        "synth_status": [rows[i][0] for i in ids],
    }
    if features:
        data.update({k: [v] * len(ids) for k, v in FEATURES.items()})
    table.write_back(pa.Table.from_pydict(data, schema=pa.schema([table.schema.field(k) for k in data])))


def outputs(table: Table) -> dict[str, dict[str, Any]]:
    cols = ["id", "validate_status", "validate_results", "valid_count", "validate_judge", "validate_visual"]
    return {r["id"]: r for r in table.to_arrow(cols).to_pylist()}


def reasons_of(row: dict[str, Any]) -> list[list[str]]:
    return [r["reasons"] for r in row["validate_results"]]


@pytest.fixture
def qa_table(make_table: Callable[..., Table]) -> tuple[Table, list[str]]:
    """8 rows: 6 with two items each (one bad), one that synth failed, one synth has not reached yet."""
    table = make_table(8)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    rows: dict[str, tuple[str | None, list[QAItem] | None]] = {
        i: ("ok", [open_item(TAGS[n]), replace(mcq_item(TAGS[n]), answer="E")]) for n, i in enumerate(ids[:6])
    }
    rows[ids[6]] = ("error: reply was not JSON", None)
    rows[ids[7]] = (None, None)
    write_qa(table, rows)
    return table, ids


# --- the rules --------------------------------------------------------------------------------------


def test_rules_statuses_and_report(qa_table: tuple[Table, list[str]]) -> None:
    table, ids = qa_table
    step, report = run_validate(table)
    got = outputs(table)
    for i in ids[:6]:
        assert got[i]["validate_status"] == "ok" and got[i]["valid_count"] == 1
        assert got[i]["validate_results"] == [
            {"valid": True, "reasons": []},
            {"valid": False, "reasons": ["mcq_answer"]},
        ]
    assert got[ids[6]]["validate_status"] == "skipped: no Q/A" and got[ids[6]]["validate_results"] is None
    assert got[ids[7]]["validate_status"] is None and got[ids[7]]["valid_count"] is None  # synth not done
    assert (step.done, step.skipped, step.errors) == (6, 1, 0)
    assert (report.rows, report.items, report.valid, report.rows_with_valid) == (6, 12, 6, 6)
    assert report.reasons == {"mcq_answer": 6} and report.without_qa == 1
    # The stored verdicts are exactly what the pure rules say.
    item = QAItem.from_row(
        table.to_arrow(["id", "synth_qa"], f"id = '{ids[0]}'").column("synth_qa")[0][1].as_py()
    )
    assert check_item(item, CONTEXT, ValidationRules()) == ["mcq_answer"]


def test_other_thresholds_recompute_from_the_stored_qa(qa_table: tuple[Table, list[str]]) -> None:
    table, ids = qa_table
    run_validate(table)
    step, report = run_validate(table, ValidationRules(min_reasoning_words=1000))
    assert step.pending == 0  # nothing per row to redo: only the global rules ran
    assert report.valid == 0 and report.reasons["reasoning_too_short"] == 12
    assert all("reasoning_too_short" in r for r in reasons_of(outputs(table)[ids[0]]))
    _, report = run_validate(table, ValidationRules(min_question_words=11, dedup=False))
    assert report.reasons == {"mcq_answer": 6, "question_too_short": 6}  # "Which item on the rye menu ..."
    _, report = run_validate(table)
    assert report.valid == 6 and report.reasons == {"mcq_answer": 6}


def test_no_features_skips_image_grounding_with_a_note(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    write_qa(table, {i: ("ok", [open_item(TAGS[n])]) for n, i in enumerate(ids)}, features=False)
    _, report = run_validate(table)
    assert report.valid == 2 and report.ungrounded_skipped == 2


def test_synth_rerun_is_picked_up(qa_table: tuple[Table, list[str]]) -> None:
    table, ids = qa_table
    run_validate(table)
    # synth retried the failed row and reached the last one; it rewrote row 5's items
    write_qa(
        table,
        {
            ids[6]: ("ok", [open_item("rye")]),
            ids[7]: ("ok", [open_item("oat")]),
            ids[5]: ("ok", [mcq_item("x")]),
        },
    )
    step, report = run_validate(table)
    got = outputs(table)
    assert step.done == 3  # the two new rows and the changed one
    assert reasons_of(got[ids[5]]) == [[]]
    # ids[6] repeats row 0's first item (rye), ids[7] repeats row 3's (oat): the earlier id keeps it.
    assert reasons_of(got[ids[6]]) == [["duplicate"]] and reasons_of(got[ids[7]]) == [["duplicate"]]
    assert report.reasons == {"mcq_answer": 5, "duplicate": 2}


def test_rows_the_filter_rejected_are_left_alone(qa_table: tuple[Table, list[str]]) -> None:
    table, ids = qa_table
    table.ensure_columns([FILTER_KEEP.field()])
    table.write_back(pa.table({"id": ids, "filter_keep": [n != 0 for n in range(len(ids))]}))
    step, report = run_validate(table)
    assert step.done == 5 and report.rows == 5 and report.not_validated == 0
    assert outputs(table)[ids[0]]["validate_status"] is None


# --- duplicates -------------------------------------------------------------------------------------


def test_duplicates_keep_the_first_valid_occurrence_by_id(make_table: Callable[..., Table]) -> None:
    table = make_table(4)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    same = open_item("rye")
    bad_twin = replace(same, reasoning="Too short to count, 4 dollars.")  # same question and answer text
    shouted = replace(same, question=same.question.upper(), answer="4 Dollars!")
    # Written in reverse id order: the decision must not depend on arrival order.
    write_qa(
        table,
        {
            ids[3]: ("ok", [shouted]),
            ids[2]: ("ok", [same, same]),
            ids[1]: ("ok", [same]),
            ids[0]: ("ok", [bad_twin]),
        },
    )
    run_validate(table)
    got = outputs(table)
    assert reasons_of(got[ids[0]]) == [["reasoning_too_short", "duplicate"]]  # first, but fails: not kept
    assert reasons_of(got[ids[1]]) == [[]]  # the first occurrence that passes everything else
    assert reasons_of(got[ids[2]]) == [["duplicate"], ["duplicate"]]
    assert reasons_of(got[ids[3]]) == [["duplicate"]]  # case and punctuation do not matter
    _, report = run_validate(table, ValidationRules(dedup=False))
    assert report.reasons == {"reasoning_too_short": 1} and report.valid == 4


# --- model checks with a scripted generator ---------------------------------------------------------

CALLS: list[GenerationRequest] = []
TRUTH: dict[str, str] = {}  # question -> right option text, known to the scripted VLM "with the image"


def _question(text: str) -> str:
    match = re.search(r"(?m)^(?:Question: )?((?:What|Which)[^\n]*\?)$", text)
    assert match, text
    return match.group(1)


def scripted_reply(request: GenerationRequest) -> GenerationResult:
    """A judge that dislikes 'weak' items, and a VLM that is right with the image, guesses 'A' without
    it, except for questions that give the answer away; 'boom' questions fail like a dead server."""
    text = message_text(request.messages[-1])
    question = _question(text)
    if "boom" in question:
        return GenerationResult(error="HTTP 503 from the server")
    if request.json_schema and "score" in request.json_schema["properties"]:
        return GenerationResult(text=json.dumps({"score": 2 if "weak" in question else 5, "reason": "ok"}))
    options = re.findall(r"(?m)^([A-D])\. (.*)$", text)
    right = next(letter for letter, option in options if option == TRUTH.get(question, "Sandwich"))
    sees = bool(message_images(request.messages[-1])) or "giveaway" in question
    return GenerationResult(text=json.dumps({"answer": right if sees else "A"}))


class ScriptedGenerator:
    """A deterministic TextGenerator for tests."""

    name = "scripted-checks"

    def __init__(self, model: str = "script-1", supports_images: bool = True) -> None:
        self.model = model
        self.supports_images = supports_images

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        CALLS.extend(requests)
        return [scripted_reply(r) for r in requests]

    def provenance(self) -> dict[str, Any]:
        return {"backend": "scripted-checks", "model": self.model}

    def close(self) -> None:
        pass


register("generator", "scripted-checks")(ScriptedGenerator)
JUDGE = CheckSettings(judge=True, backend="scripted-checks", model="script-1")
VISUAL = CheckSettings(visual_dependency=True, backend="scripted-checks", model="script-1")


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def judged_table(make_table: Callable[..., Table], name: str = "t.lance") -> tuple[Table, list[str]]:
    table = make_table(6, name=name)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    weak = replace(open_item("weak"), question="What is the price of the weak loaf on the red bakery sign?")
    rows: dict[str, tuple[str | None, list[QAItem] | None]] = {
        i: ("ok", [open_item(TAGS[n]), mcq_item(TAGS[n])]) for n, i in enumerate(ids)
    }
    rows[ids[2]] = ("ok", [weak])
    write_qa(table, rows)
    return table, ids


def test_judge_scores_are_stored_and_rethresholded_without_new_calls(
    make_table: Callable[..., Table],
) -> None:
    table, ids = judged_table(make_table)
    _, report = run_validate(table, checks=JUDGE)
    assert len(CALLS) == 11 and all(r.temperature == 0.0 for r in CALLS)
    got = outputs(table)
    assert got[ids[0]]["validate_judge"] == [5, 5] and got[ids[2]]["validate_judge"] == [2]
    assert reasons_of(got[ids[2]]) == [["judge_score"]]
    assert report.reasons == {"judge_score": 1} and report.checks == ["judge"]
    CALLS.clear()
    _, report = run_validate(table, ValidationRules(judge_threshold=2), JUDGE)
    assert CALLS == [] and report.valid == 11
    # Without --judge the stored scores are kept but do not count.
    _, report = run_validate(table)
    assert report.valid == 11 and outputs(table)[ids[2]]["validate_judge"] == [2]


def test_judge_turned_on_later_judges_done_rows_without_redo(make_table: Callable[..., Table]) -> None:
    table, _ = judged_table(make_table)
    run_validate(table)
    assert CALLS == []
    step, report = run_validate(table, checks=JUDGE)
    assert step.done == 6 and len(CALLS) == 11 and report.reasons == {"judge_score": 1}


def test_visual_dependency(make_table: Callable[..., Table]) -> None:
    table = make_table(3)
    ids = sorted(table.to_arrow(["id"]).column("id").to_pylist())
    giveaway = replace(mcq_item("giveaway"), question="Which item on the giveaway menu board costs the most?")
    wrong = mcq_item("salad", truth="Salad")  # the item says Salad; the VLM with the image says Sandwich
    write_qa(
        table,
        {
            ids[0]: ("ok", [mcq_item("rye"), open_item("rye")]),
            ids[1]: ("ok", [giveaway]),
            ids[2]: ("ok", [wrong]),
        },
    )
    _, report = run_validate(table, checks=VISUAL)
    assert len(CALLS) == 3 * 4 * 2  # 3 MCQs x 4 option orders x with/without the image
    got = outputs(table)
    # Guessing 'A' without the image is right once in 4 rotations: chance, so it passes.
    assert got[ids[0]]["validate_visual"] == [
        {"rotations": 4, "correct_with_image": 4, "correct_without_image": 1},
        None,
    ]
    assert reasons_of(got[ids[0]]) == [[], []]
    assert reasons_of(got[ids[1]]) == [["answerable_without_image"]]
    assert got[ids[2]]["validate_visual"][0]["correct_with_image"] == 0
    assert reasons_of(got[ids[2]]) == [["image_answer_wrong"]]
    assert report.valid == 2
    with_image = [r for r in CALLS if message_images(r.messages[-1])]
    assert len(with_image) == 12 and message_images(with_image[0].messages[-1])[0][:2] == b"\xff\xd8"


def test_visual_dependency_needs_an_image_backend(qa_table: tuple[Table, list[str]]) -> None:
    table, _ = qa_table
    checks = replace(VISUAL, backend_options={"supports_images": False})
    with pytest.raises(Exception, match="--visual-dependency needs a backend that sees images"):
        run_validate(table, checks=checks)


def test_transport_errors_are_recorded_per_row_and_retried(make_table: Callable[..., Table]) -> None:
    table, ids = judged_table(make_table)
    boom = replace(open_item("boom"), question="What is the price of the boom loaf on the red bakery sign?")
    write_qa(table, {ids[1]: ("ok", [boom])})
    step, report = run_validate(table, checks=JUDGE)
    got = outputs(table)
    assert got[ids[1]]["validate_status"] == "error: judge: HTTP 503 from the server"
    assert got[ids[1]]["validate_results"] is None and step.errors == 1 and step.done == 5
    assert report.not_validated == 1
    write_qa(table, {ids[1]: ("ok", [open_item("fixed")])})
    step, _ = run_validate(table, checks=JUDGE, options=RunOptions(retry_errors=True))
    assert step.done == 1 and outputs(table)[ids[1]]["validate_status"] == "ok"


def test_limit_then_rerun_equals_one_run(make_table: Callable[..., Table]) -> None:
    checks = replace(JUDGE, visual_dependency=True)
    one, _ = judged_table(make_table, "one.lance")
    run_validate(one, checks=checks)
    calls = len(CALLS)
    CALLS.clear()
    two, _ = judged_table(make_table, "two.lance")
    first, _ = run_validate(two, checks=checks, options=RunOptions(limit=2, batch_size=1))
    assert first.done == 2 and sum(r["validate_status"] is None for r in outputs(two).values()) == 4
    second, _ = run_validate(two, checks=checks)
    assert second.done == 4 and len(CALLS) == calls  # no row was asked twice
    assert outputs(one) == outputs(two)


def test_redo_recomputes_the_model_checks(make_table: Callable[..., Table]) -> None:
    table, _ = judged_table(make_table)
    run_validate(table, checks=JUDGE)
    CALLS.clear()
    step, _ = run_validate(table, checks=JUDGE, options=RunOptions(redo=True))
    assert step.done == 6 and len(CALLS) == 11


# --- through a real HTTP server ---------------------------------------------------------------------


def test_judge_through_the_openai_backend_and_stub_server(make_table: Callable[..., Table]) -> None:
    from vlcli.testing.stub_server import StubServer

    table, ids = judged_table(make_table)

    def reply(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        return json.dumps({"score": 1 if "weak loaf" in text else 4, "reason": "checked"})

    with StubServer(reply=reply, capacity=4) as server:
        checks = CheckSettings(
            judge=True, backend="openai", model="judge-model", base_url=server.base_url, concurrency=4
        )
        step, report = run_validate(table, checks=checks)
        assert len(server.requests) == 11 and server.max_in_flight <= 4
    assert step.done == 6 and report.reasons == {"judge_score": 1}
    assert outputs(table)[ids[2]]["validate_judge"] == [1]


# --- CLI and status ---------------------------------------------------------------------------------


def test_cli_runs_and_prints_counts(qa_table: tuple[Table, list[str]]) -> None:
    table, _ = qa_table
    result = CliRunner().invoke(app, ["validate", table.path, "-q"])
    assert result.exit_code == 0, result.output
    assert "6 of 12 items valid" in result.output and "mcq_answer" in result.output
    result = CliRunner().invoke(app, ["validate", table.path, "-q", "--min-reasoning-words", "1000"])
    assert "0 of 12 items valid" in result.output and "reasoning_too_short" in result.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--min-overlap", "1.5"], "--min-overlap"),
        (["--max-question-words", "2"], "--max-question-words"),
        (["--min-steps", "-1"], "--min-steps"),
        (["--judge-threshold", "9"], "--judge-threshold"),
        (["--rotations", "5"], "--rotations"),
        (["--judge", "--model", "m", "--backend", "scripted-checks", "--base-url", "http://x"], "--base-url"),
        (["--judge"], "--model"),
    ],
)
def test_cli_bad_options_give_one_line(qa_table: tuple[Table, list[str]], args: list[str], flag: str) -> None:
    table, _ = qa_table
    result = CliRunner().invoke(app, ["validate", table.path, *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and flag in lines[0]


def test_cli_without_qa_columns(make_table: Callable[..., Table]) -> None:
    table = make_table(2)
    result = CliRunner().invoke(app, ["validate", table.path])
    assert (
        result.exit_code == 2 and "vl synth" in result.output and len(result.output.strip().splitlines()) == 1
    )


def test_status_shows_validate(qa_table: tuple[Table, list[str]]) -> None:
    table, _ = qa_table
    run_validate(table)
    counts = table_status(table).step("validate")
    # the row synth has not reached is blocked: `vl validate` would not take it (it is not pending)
    assert (counts.done, counts.skipped, counts.pending, counts.blocked) == (6, 1, 0, 1)
    result = CliRunner().invoke(app, ["status", table.path])
    assert result.exit_code == 0 and "validate" in result.output


def test_view_sent_to_the_vlm_is_the_crop_scaled_to_image_size() -> None:
    import io

    from PIL import Image

    from vlcli.steps.validate.step import view_jpeg

    buf = io.BytesIO()
    Image.new("RGB", (600, 400), "red").save(buf, "PNG")
    row = {"image": buf.getvalue(), "width": 600, "height": 400, "crop_box": [100, 0, 500, 200]}
    with Image.open(io.BytesIO(view_jpeg(row, 100))) as sent:
        assert sent.format == "JPEG" and max(sent.size) <= 100 and sent.size[0] == 2 * sent.size[1]
