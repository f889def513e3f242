"""Parsing model replies into Q/A items: wrappers, repairs, shapes, and the reasons given for bad ones."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlcli.steps.synth.qa import QAItem
from vlcli.steps.synth.replies import ReplyError, json_values, parse_items, reply_schema

MCQ = {
    "question": "How many?",
    "options": ["1", "2", "3", "4"],
    "answer": "C",
    "reasoning": "1. a\n2. b\n3. c",
}
QA = {"question": "What is the total?", "answer": "12.50", "reasoning": "The receipt says TOTAL 12.50."}
WANT_MCQ = QAItem("How many?", "C", "1. a\n2. b\n3. c", ["1", "2", "3", "4"])
WANT_QA = QAItem("What is the total?", "12.50", "The receipt says TOTAL 12.50.")


def wrapped(items: list[dict[str, object]]) -> str:
    return json.dumps({"questions": items})


@pytest.mark.parametrize(
    "reply",
    [
        wrapped([MCQ, MCQ]),
        json.dumps([MCQ, MCQ]),  # a bare list
        f"```json\n{wrapped([MCQ, MCQ])}\n```",
        f"```\n{wrapped([MCQ, MCQ])}\n```",
        f"Sure! Here are the questions:\n\n```json\n{wrapped([MCQ, MCQ])}\n```\nLet me know if you need more.",
        f"Here they are: {wrapped([MCQ, MCQ])} Hope this helps.",
        f"<think>The user wants {{two}} questions [maybe].</think>\n{wrapped([MCQ, MCQ])}",
        "{'questions': [" + repr(MCQ) + ", " + repr(MCQ) + ",],}",  # Python dict syntax, trailing commas
        wrapped([MCQ, MCQ]).replace("}]}", "},]}"),  # one trailing comma in JSON
        json.dumps({"items": [MCQ, MCQ]}),
        json.dumps({"result": {"note": "x"}, "mcqs": [MCQ, MCQ]}),
        json.dumps({"Questions": [{k.capitalize(): v for k, v in MCQ.items()}] * 2}),  # key case
        wrapped([MCQ, MCQ, MCQ]),  # more than asked: the first two are kept
        wrapped([MCQ, MCQ]).replace("\\n", "\n"),  # raw newlines inside strings
    ],
)
def test_mcq_replies_that_parse(reply: str) -> None:
    assert parse_items(reply, "mcq", 2) == [WANT_MCQ, WANT_MCQ]


@pytest.mark.parametrize(
    ("answer", "letter"),
    [("C", "C"), ("c", "C"), ("(C)", "C"), ("C)", "C"), ("C.", "C"), ("C) 3", "C"), ("Answer: C", "C"),
     ("The answer is C", "C"), ("option c", "C"), (" [C] ", "C"), ("3", "C")],
)  # fmt: skip
def test_answer_letters(answer: str, letter: str) -> None:
    assert parse_items(wrapped([{**MCQ, "answer": answer}]), "mcq", 1)[0].answer == letter


def test_option_forms() -> None:
    labelled = {**MCQ, "options": ["A) 1", "B. 2", "(C) 3", "D: 4"]}
    assert parse_items(wrapped([labelled]), "mcq", 1) == [WANT_MCQ]
    keyed = {**MCQ, "options": {"A": "1", "B": "2", "C": "3", "D": "4"}}
    assert parse_items(wrapped([keyed]), "mcq", 1) == [WANT_MCQ]
    numbers = {**MCQ, "options": [1, 2, 3, 4]}
    assert parse_items(wrapped([numbers]), "mcq", 1) == [WANT_MCQ]
    mislabelled = {**MCQ, "options": ["B) 1", "A) 2", "C) 3", "D) 4"]}  # label != position: kept as text
    assert parse_items(wrapped([mislabelled]), "mcq", 1)[0].options[0] == "B) 1"


def test_reasoning_lists_are_numbered() -> None:
    steps = {**MCQ, "reasoning": ["Count the cups", "Read the price", "Multiply"]}
    assert parse_items(wrapped([steps]), "mcq", 1)[0].reasoning == (
        "1. Count the cups\n2. Read the price\n3. Multiply"
    )
    numbered = {**MCQ, "reasoning": ["1. a", "2. b", "3. c"]}
    assert parse_items(wrapped([numbered]), "mcq", 1)[0].reasoning == "1. a\n2. b\n3. c"
    aliased = {k: v for k, v in MCQ.items() if k != "reasoning"} | {"rationale": "1. a\n2. b\n3. c"}
    assert parse_items(wrapped([aliased]), "mcq", 1) == [WANT_MCQ]


@pytest.mark.parametrize(
    "reply",
    [
        json.dumps(QA),  # one bare item
        wrapped([QA]),
        json.dumps([QA]),
        f"```json\n{json.dumps(QA)}\n```",
        json.dumps({**QA, "options": ["ignored"]}),
    ],
)
def test_open_replies_that_parse(reply: str) -> None:
    assert parse_items(reply, "qa", 1) == [WANT_QA]


def test_numbers_as_answers() -> None:
    assert parse_items(json.dumps({**QA, "answer": 12.5}), "qa", 1)[0].answer == "12.5"
    assert parse_items(json.dumps({**QA, "answer": True}), "qa", 1)[0].answer == "true"


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("I'm sorry, I can't help with that.", "no JSON found"),
        ('{"questions": [{"question": "q", "options": ["a", "b"', "may have hit --max-tokens"),
        ("[1, 2, 3]", "not of question objects"),
        ('{"answer": "yes"}', "no questions"),
        ('"just a string"', "no JSON found"),
        (wrapped([MCQ]), "expected 2 questions, got 1"),
        (wrapped([]), "expected 2 questions, got 0"),
        (wrapped([MCQ, {**MCQ, "options": ["a", "b", "c"]}]), "question 2 has 3 options (need 4)"),
        (wrapped([MCQ, {**MCQ, "options": ["a", "b", "c", "d", "e"]}]), "question 2 has 5 options"),
        (wrapped([MCQ, {**MCQ, "answer": "E"}]), "question 2: answer 'E' is not a letter A-D"),
        (wrapped([MCQ, {**MCQ, "answer": "a dog"}]), "answer 'a dog' is not a letter"),
        (wrapped([MCQ, {**MCQ, "answer": ""}]), "question 2 has no answer"),
        (wrapped([MCQ, {**MCQ, "question": "  "}]), "question 2 has no question text"),
        (wrapped([MCQ, {**MCQ, "reasoning": []}]), "question 2 has no reasoning"),
        (wrapped([MCQ, {**MCQ, "options": ["a", "", "c", "d"]}]), "option B is empty"),
        (wrapped([MCQ, {**MCQ, "options": ["a", None, "c", "d"]}]), "option B is not text"),
        (wrapped([MCQ, {**MCQ, "options": "a, b, c, d"}]), "no list of options"),
        (
            wrapped([MCQ, {**MCQ, "options": {"A": "1", "B": "2", "X": "3", "D": "4"}}]),
            "labelled A, B, C and D",
        ),
        (wrapped([MCQ, "not an object"]), "question 2 is not a JSON object"),
        ("[" + json.dumps(MCQ) + ', "text"]', "question 2 is not a JSON object"),
        (json.dumps({"questions": [MCQ, ["nested"]]}), "question 2 is not a JSON object"),
    ],
)
def test_replies_that_do_not_parse_say_why(reply: str, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse_items(reply, "mcq", 2)


def test_a_stray_object_before_the_questions_is_skipped() -> None:
    reply = f'Using {{"format": "json"}} as asked: {wrapped([MCQ, MCQ])}'
    assert parse_items(reply, "mcq", 2) == [WANT_MCQ, WANT_MCQ]


def test_reason_prefers_the_object_that_held_questions() -> None:
    reply = f'Note {{"x": 1}} then {wrapped([{**MCQ, "answer": "Z"}, MCQ])}'
    with pytest.raises(ReplyError, match="question 1: answer 'Z'"):
        parse_items(reply, "mcq", 2)


def test_apostrophes_in_prose_do_not_break_the_scan() -> None:
    reply = f"Here's what I've got: {wrapped([MCQ, MCQ])} -- don't forget it's JSON"
    assert parse_items(reply, "mcq", 2) == [WANT_MCQ, WANT_MCQ]


def test_repairs_leave_valid_strings_alone() -> None:
    tricky = {**QA, "reasoning": "It's 'quoted', True, None, and ends with a comma,]"}
    assert parse_items(json.dumps(tricky), "qa", 1)[0].reasoning == tricky["reasoning"]


def test_garbage_full_of_brackets_is_cheap() -> None:
    reply = "{[" * 50_000 + "no json here"
    with pytest.raises(ReplyError):
        parse_items(reply, "mcq", 2)
    assert list(json_values("[" * 10_000)) == []


def test_the_schema_asks_for_the_same_shape() -> None:
    schema = reply_schema("mcq", 2)
    questions = schema["properties"]["questions"]
    assert (questions["minItems"], questions["maxItems"]) == (2, 2)
    item = questions["items"]
    assert item["properties"]["answer"]["enum"] == ["A", "B", "C", "D"]
    assert item["properties"]["options"]["minItems"] == item["properties"]["options"]["maxItems"] == 4
    assert "options" not in reply_schema("qa", 1)["properties"]["questions"]["items"]["properties"]


text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.builds(
            lambda q, opts, k, r: {"question": q, "options": opts, "answer": "ABCD"[k], "reasoning": r},
            text,
            st.lists(text, min_size=4, max_size=4),
            st.integers(0, 3),
            text,
        ),
        min_size=1,
        max_size=3,
    ),
    style=st.sampled_from(["plain", "fenced", "prose", "list", "indented"]),
)
def test_any_valid_reply_round_trips(items: list[dict[str, object]], style: str) -> None:
    body = json.dumps(
        items if style == "list" else {"questions": items}, indent=2 if style == "indented" else None
    )
    reply = {"fenced": f"```json\n{body}\n```", "prose": f"Here you go:\n{body}\nDone."}.get(style, body)
    got = parse_items(reply, "mcq", len(items))
    assert [g.answer for g in got] == [i["answer"] for i in items]
    assert [g.question for g in got] == [str(i["question"]).strip() for i in items]
