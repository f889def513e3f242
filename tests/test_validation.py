"""The pure validation rules: every rule passing and failing, thresholds, normalization, parsing."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from vlcli.errors import UsageError
from vlcli.steps.synth.qa import QAItem
from vlcli.steps.validate.model_checks import (
    judge_verdict,
    parse_letter,
    parse_score,
    rotated,
    visual_verdict,
)
from vlcli.steps.validate.rules import (
    REASONS,
    ImageContext,
    ValidationRules,
    answer_letter,
    check_item,
    content_words,
    duplicate_key,
    is_question,
    normalize,
    numbered_steps,
    overlap,
)

RULES = ValidationRules()
BAKERY = ImageContext.from_features("BREAD 4 DOLLARS", ["door", "person"], "a bakery with a red sign")
MENU = ImageContext.from_features("MENU coffee 2 sandwich 7 salad 6 juice 3", [], None)
NOTHING = ImageContext.from_features(None, [], None)

OPEN = QAItem(
    question="What is the price shown on the red sign above the bakery door?",
    answer="4 dollars",
    reasoning="The red sign above the bakery door reads BREAD 4 DOLLARS, so a loaf costs 4 dollars.",
)
MCQ = QAItem(
    question="Which item on the menu board costs the most?",
    options=["Coffee", "Sandwich", "Salad", "Juice"],
    answer="B",
    reasoning=(
        "1. The menu board lists coffee at 2, sandwich at 7, salad at 6 and juice at 3. "
        "2. Comparing the prices, 7 is the largest. 3. So the sandwich costs the most."
    ),
)
LONG = " ".join(["bread"] * 501)
LONG_QUESTION = "What is " + " ".join(["bread"] * 200) + "?"

# (name, base item, changes, context, rules, expected reasons)
CASES: list[tuple[str, QAItem, dict[str, Any], ImageContext, ValidationRules, list[str]]] = [
    ("good open item", OPEN, {}, BAKERY, RULES, []),
    ("good mcq", MCQ, {}, MENU, RULES, []),
    ("missing question", OPEN, {"question": "  "}, BAKERY, RULES, ["missing_field"]),
    ("missing answer", OPEN, {"answer": ""}, BAKERY, RULES, ["missing_field"]),
    ("missing reasoning", OPEN, {"reasoning": ""}, BAKERY, RULES, ["missing_field"]),
    ("question too short", OPEN, {"question": "Bread price?"}, BAKERY, RULES, ["question_too_short"]),
    (
        "question at the minimum",
        OPEN,
        {"question": "What does bread cost?"},
        BAKERY,
        replace(RULES, min_question_words=4),
        [],
    ),
    (
        "question too long",
        OPEN,
        {"question": LONG_QUESTION},
        BAKERY,
        RULES,
        ["question_too_long"],
    ),
    (
        "longer question allowed",
        OPEN,
        {"question": LONG_QUESTION},
        BAKERY,
        replace(RULES, max_question_words=1000),
        [],
    ),
    (
        "statement, not a question",
        OPEN,
        {"question": "The red sign above the bakery door shows a price."},
        BAKERY,
        RULES,
        ["not_a_question"],
    ),
    (
        "question form off",
        OPEN,
        {"question": "The red sign above the bakery door shows a price."},
        BAKERY,
        replace(RULES, question_form=False),
        [],
    ),
    (
        "imperative opener",
        OPEN,
        {"question": "Identify the price written on the red bakery sign."},
        BAKERY,
        RULES,
        [],
    ),
    (
        "lead-in then question word",
        OPEN,
        {"question": "Based on the red sign, what does the bread cost."},
        BAKERY,
        RULES,
        [],
    ),
    (
        "yes/no opener",
        OPEN,
        {"question": "Is the bread on the bakery sign cheaper than 5 dollars"},
        BAKERY,
        RULES,
        [],
    ),
    ("answer too long", OPEN, {"answer": LONG}, BAKERY, RULES, ["answer_too_long"]),
    (
        "answer too short",
        OPEN,
        {"answer": "4 dollars"},
        BAKERY,
        replace(RULES, min_answer_words=3),
        ["answer_too_short"],
    ),
    (
        "refusal: unable to",
        OPEN,
        {"answer": "I am unable to read the price on the sign."},
        BAKERY,
        RULES,
        ["refusal"],
    ),
    (
        "refusal: as an AI",
        OPEN,
        {"answer": "As an AI I cannot read the red sign on the bakery door."},
        BAKERY,
        RULES,
        ["refusal"],
    ),
    (
        "refusal: cannot determine",
        OPEN,
        {"answer": "The bread price cannot determine from the red sign"},
        BAKERY,
        RULES,
        ["refusal"],
    ),
    (
        "refusal: sorry (curly apostrophe)",
        OPEN,
        {"answer": "I’m sorry, the red sign on the bakery door is unclear."},
        BAKERY,
        RULES,
        ["refusal"],
    ),
    (
        "refusal: no information",
        OPEN,
        {"answer": "There is no information about the sign price."},
        BAKERY,
        RULES,
        ["refusal"],
    ),
    (
        "reasoning too short",
        OPEN,
        {"reasoning": "The sign says 4 dollars."},
        BAKERY,
        RULES,
        ["reasoning_too_short"],
    ),
    (
        "short reasoning allowed",
        OPEN,
        {"reasoning": "The sign says 4 dollars."},
        BAKERY,
        replace(RULES, min_reasoning_words=5),
        [],
    ),
    (
        "mcq with three options",
        MCQ,
        {"options": ["Coffee", "Sandwich", "Salad"]},
        MENU,
        RULES,
        ["mcq_options"],
    ),
    (
        "mcq with five options",
        MCQ,
        {"options": ["Coffee", "Sandwich", "Salad", "Juice", "Tea"]},
        MENU,
        RULES,
        ["mcq_options"],
    ),
    (
        "mcq with repeated options",
        MCQ,
        {"options": ["Coffee", "Sandwich", "coffee.", "Juice"]},
        MENU,
        RULES,
        ["mcq_options"],
    ),
    (
        "mcq with an empty option",
        MCQ,
        {"options": ["Coffee", "Sandwich", " ", "Juice"]},
        MENU,
        RULES,
        ["mcq_options"],
    ),
    ("mcq answer not a letter", MCQ, {"answer": "Sandwich"}, MENU, RULES, ["mcq_answer"]),
    ("mcq answer out of range", MCQ, {"answer": "E"}, MENU, RULES, ["mcq_answer"]),
    (
        "mcq answer beyond the options",
        MCQ,
        {"options": ["Coffee", "Sandwich", "Salad"], "answer": "D"},
        MENU,
        RULES,
        ["mcq_options", "mcq_answer"],
    ),
    ("mcq answer '(b)'", MCQ, {"answer": "(b)"}, MENU, RULES, []),
    (
        "mcq answer length is the option's",
        MCQ,
        {"options": ["Coffee", "The sandwich", "Salad", "Juice"]},
        MENU,
        replace(RULES, min_answer_words=2),
        [],
    ),
    ("mcq option too short", MCQ, {}, MENU, replace(RULES, min_answer_words=2), ["answer_too_short"]),
    ("mcq answer 'B.'", MCQ, {"answer": "B."}, MENU, RULES, []),
    (
        "mcq without numbered steps",
        MCQ,
        {
            "reasoning": "The menu board lists coffee at 2 and sandwich at 7, so the sandwich costs the most of all items."
        },
        MENU,
        RULES,
        ["mcq_steps"],
    ),
    (
        "mcq with two steps",
        MCQ,
        {
            "reasoning": "1. The menu board lists sandwich at 7 and coffee at 2. 2. So the sandwich costs the most here."
        },
        MENU,
        RULES,
        ["mcq_steps"],
    ),
    (
        "two steps allowed",
        MCQ,
        {
            "reasoning": "1. The menu board lists sandwich at 7 and coffee at 2. 2. So the sandwich costs the most here."
        },
        MENU,
        replace(RULES, min_steps=2),
        [],
    ),
    (
        "steps as 'Step k:'",
        MCQ,
        {
            "reasoning": "Step 1: read the menu board prices. Step 2: the sandwich is 7. Step 3: the sandwich costs the most."
        },
        MENU,
        RULES,
        [],
    ),
    (
        "steps as '(k)'",
        MCQ,
        {
            "reasoning": "(1) read the menu board prices (2) the sandwich is 7, the highest (3) so the sandwich costs the most"
        },
        MENU,
        RULES,
        [],
    ),
    ("answer not in the reasoning", OPEN, {"answer": "Seven euros fifty"}, BAKERY, RULES, ["low_grounding"]),
    ("overlap check off", OPEN, {"answer": "Seven euros fifty"}, BAKERY, replace(RULES, min_overlap=0.0), []),
    (
        "mcq: chosen option's text not in the reasoning",
        MCQ,
        {"options": ["Coffee", "Sandwich", "Salad", "Tea"], "answer": "D"},
        MENU,
        RULES,
        ["low_grounding"],
    ),
    ("plural matches singular", OPEN, {"answer": "4 dollar"}, BAKERY, RULES, []),
    (
        "no feature word mentioned",
        OPEN,
        {},
        ImageContext.from_features("ZEBRA", ["giraffe"], "savanna animals"),
        RULES,
        ["ungrounded"],
    ),
    (
        "image grounding off",
        OPEN,
        {},
        ImageContext.from_features("ZEBRA", ["giraffe"], "savanna animals"),
        replace(RULES, image_grounding=False),
        [],
    ),
    ("no features: grounding skipped", OPEN, {}, NOTHING, RULES, []),
    (
        "object label grounds",
        OPEN,
        {
            "question": "How many people wait at the shop entrance today?",
            "reasoning": "One person stands at the entrance holding a loaf that costs 4 dollars.",
        },
        BAKERY,
        RULES,
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "base", "changes", "context", "rules", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_rule(
    name: str,
    base: QAItem,
    changes: dict[str, Any],
    context: ImageContext,
    rules: ValidationRules,
    expected: list[str],
) -> None:
    reasons = check_item(replace(base, **changes), context, rules)
    assert reasons == expected
    assert set(reasons) <= set(REASONS)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("min_question_words", -1, "--min-question-words"),
        ("max_question_words", 3, "--max-question-words"),  # below the minimum of 5
        ("min_answer_words", -1, "--min-answer-words"),
        ("max_answer_words", 0, "--max-answer-words"),
        ("min_reasoning_words", -2, "--min-reasoning-words"),
        ("min_overlap", 1.5, "--min-overlap"),
        ("min_overlap", -0.1, "--min-overlap"),
        ("min_steps", -1, "--min-steps"),
        ("judge_threshold", 6, "--judge-threshold"),
        ("judge_threshold", 0, "--judge-threshold"),
    ],
)
def test_bad_threshold_names_its_flag(field: str, value: float, flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        ValidationRules(**{field: value})


def test_normalize_and_duplicate_key() -> None:
    assert normalize("  What's   the PRICE?\n") == "what s the price"
    a = QAItem("What is the price?", "4 dollars", "r")
    b = QAItem("what is the price", "4 Dollars!", "other reasoning")
    assert duplicate_key(a) == duplicate_key(b)
    # An MCQ is keyed on the chosen option's text: the same question with options shuffled is a duplicate.
    shuffled = replace(MCQ, options=["Sandwich", "Coffee", "Salad", "Juice"], answer="A")
    assert duplicate_key(MCQ) == duplicate_key(shuffled)
    assert duplicate_key(MCQ) != duplicate_key(replace(MCQ, answer="C"))


def test_helpers() -> None:
    assert numbered_steps("1. a 2. b 3. c") == 3
    assert numbered_steps("1. a 3. c 4. d") == 1  # numbering must run 1, 2, ... without gaps
    assert numbered_steps("the price is 3.5 and 12. Then") == 0
    assert numbered_steps("1) a\n2) b\n3) c\n4) d") == 4
    assert is_question("Where is it?") and not is_question("It is here.")
    assert answer_letter(" c ") == "C" and answer_letter("AB") is None
    assert content_words("The cars and the bodies") == ["car", "body"]
    assert overlap("the a", "anything") is None
    assert overlap("red car", "a red truck") == 0.5


def test_model_check_verdicts_and_parsing() -> None:
    assert judge_verdict(5, 4.0) == [] and judge_verdict(3, 4.0) == ["judge_score"]
    assert judge_verdict(None, 4.0) == ["judge_no_score"]
    passed = {"rotations": 4, "correct_with_image": 4, "correct_without_image": 1}
    assert visual_verdict(passed) == []  # 1 of 4 without the image is chance
    assert visual_verdict({**passed, "correct_with_image": 3}) == ["image_answer_wrong"]
    assert visual_verdict({**passed, "correct_without_image": 2}) == ["answerable_without_image"]
    assert visual_verdict({"rotations": 2, "correct_with_image": 2, "correct_without_image": 1}) == [
        "answerable_without_image"
    ]
    assert visual_verdict(None) == []
    assert rotated(MCQ, 1) == (["Sandwich", "Salad", "Juice", "Coffee"], "A")
    assert rotated(MCQ, 3) == (["Juice", "Coffee", "Sandwich", "Salad"], "C")
    assert parse_score('```json\n{"score": 4, "reason": "fine"}\n```') == 4
    assert (
        parse_score("Score: 2/5") == 2 and parse_score('{"score": 9}') is None and parse_score("meh") is None
    )
    assert parse_letter('{"answer": "C"}') == "C" and parse_letter("(D) red") == "D"
    assert parse_letter("The answer is B.") == "B" and parse_letter("A good guess") is None
