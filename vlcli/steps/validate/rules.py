"""The rules `vl validate` applies to each generated Q/A item: pure functions, no table, no model.

Each failed rule gives a short stable reason code; an item is valid when it has none. Duplicates need
the whole table, so `check_item` leaves them to the caller (`duplicate_key` gives the text to compare).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vlcli.errors import UsageError
from vlcli.steps.synth.qa import LETTERS, QAItem


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Every code `check_item` and the table-wide checks can give, in the order reports list them.
REASONS = (
    "missing_field",
    "question_too_short",
    "question_too_long",
    "not_a_question",
    "answer_too_short",
    "answer_too_long",
    "refusal",
    "reasoning_too_short",
    "mcq_options",
    "mcq_answer",
    "mcq_steps",
    "low_grounding",
    "ungrounded",
    "judge_score",
    "judge_no_score",
    "image_answer_wrong",
    "answerable_without_image",
    "duplicate",
)

# Words a question may open with: interrogatives, auxiliaries that start yes/no questions, and the
# imperatives generation prompts use ("Identify the ...", "Calculate ...").
QUESTION_OPENERS = _wordset(
    """what which who whom whose when where why how is are was were do does did can could should would
    will shall may might must has have had identify determine find calculate compute estimate name count
    list describe explain compare select choose state give infer tell rank order match classify
    evaluate"""
)
# "Based on the chart, what ...": the opener may follow a leading clause like these.
_LEAD_INS = ("based on", "according to", "looking at", "given", "in the", "from the", "using the")

REFUSALS = (
    "unable to",
    "cannot determine",
    "can't determine",
    "cannot be determined",
    "can not be determined",
    "not possible to",
    "impossible to determine",
    "i'm sorry",
    "i am sorry",
    "as an ai",
    "as a language model",
    "no information",
    "not enough information",
    "insufficient information",
    "i cannot",
    "i can't",
    "not provided in the",
)

STOPWORDS = _wordset(
    """a an the and or but if then else of to in on at by for with from into onto over under about above
    below between through during before after up down out off again further once here there this that
    these those it its itself they them their theirs he him his she her hers we us our ours you your
    yours i me my mine is are was were be been being am do does did doing have has had having will would
    shall should can could may might must not no nor so than too very just only also as such both each
    few more most other some any all own same what which who whom whose when where why how s t don
    image picture photo shown shows show answer question option"""
)

_WORD = re.compile(r"[a-z0-9]+")
_STEP = re.compile(r"(?:^|\s)(?:step\s*(\d+)\b|\((\d+)\)|(\d+)[.):](?=\s|$))", re.IGNORECASE)
_LETTER = re.compile(r"^\(?([A-Da-d])\)?[.):]?$")


@dataclass(frozen=True)
class ValidationRules:
    """Thresholds of every rule; checked once here, each error naming the flag to change."""

    min_question_words: int = 5
    max_question_words: int = 200
    min_answer_words: int = 1
    max_answer_words: int = 500
    min_reasoning_words: int = 10
    min_overlap: float = 0.3  # share of the answer's content words found in the reasoning
    min_steps: int = 3  # numbered reasoning steps an MCQ needs
    question_form: bool = True
    image_grounding: bool = True
    dedup: bool = True
    judge_threshold: float = 4.0  # used when the judge ran: scores below fail

    def __post_init__(self) -> None:
        if self.min_question_words < 0:
            raise UsageError("--min-question-words must be 0 or more")
        if self.max_question_words < max(1, self.min_question_words):
            raise UsageError("--max-question-words must be at least 1 and at least --min-question-words")
        if self.min_answer_words < 0:
            raise UsageError("--min-answer-words must be 0 or more")
        if self.max_answer_words < max(1, self.min_answer_words):
            raise UsageError("--max-answer-words must be at least 1 and at least --min-answer-words")
        if self.min_reasoning_words < 0:
            raise UsageError("--min-reasoning-words must be 0 or more")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise UsageError("--min-overlap is a fraction in [0, 1] (0 turns the check off)")
        if self.min_steps < 0:
            raise UsageError("--min-steps must be 0 or more")
        if not 1.0 <= self.judge_threshold <= 5.0:
            raise UsageError("--judge-threshold is a score in [1, 5]")


@dataclass(frozen=True)
class ImageContext:
    """What the bin step found in an item's image: the words a grounded item should mention."""

    words: frozenset[str] = frozenset()

    @classmethod
    def from_features(
        cls, ocr_text: str | None, object_labels: Iterable[str | None], caption: str | None
    ) -> ImageContext:
        """Content words of the OCR text, the detected object labels and the caption."""
        texts = [ocr_text or "", *(label or "" for label in object_labels), caption or ""]
        return cls(frozenset(w for t in texts for w in content_words(t)))

    @property
    def has_features(self) -> bool:
        """Whether there is anything to ground against (else the image check is skipped)."""
        return bool(self.words)


def word_count(text: str) -> int:
    """Whitespace-separated words."""
    return len(text.split())


def _stem(word: str) -> str:
    # Just enough to match "cars" with the label "car" and "bodies" with "body".
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """Lowercased, lightly stemmed words without stopwords and single letters (digits are kept)."""
    out = []
    for w in _WORD.findall(text.lower().replace("’", "'")):
        if w in STOPWORDS or (len(w) == 1 and not w.isdigit()):
            continue
        out.append(_stem(w))
    return out


def normalize(text: str) -> str:
    """Lowercase, punctuation dropped, whitespace collapsed: the form duplicates are compared in."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", text.lower()).split())


def answer_letter(answer: str) -> str | None:
    """The option letter an MCQ answer names ('B', 'b', '(B)', 'B.'), or None."""
    match = _LETTER.match(answer.strip())
    return match.group(1).upper() if match else None


def answer_text(item: QAItem) -> str:
    """The answer as text: the chosen option's text for an MCQ with a valid letter, else the answer."""
    letter = answer_letter(item.answer) if item.options else None
    if letter is not None and LETTERS.index(letter) < len(item.options):
        return item.options[LETTERS.index(letter)] or ""
    return item.answer


def duplicate_key(item: QAItem) -> str:
    """The normalized question and answer text two items are duplicates by."""
    return normalize(f"{item.question} {answer_text(item)}")


def is_question(question: str) -> bool:
    """Ends with '?' or opens (possibly after a lead-in like 'Based on the chart,') with a question word."""
    text = question.strip()
    if text.endswith("?"):
        return True
    words = _WORD.findall(text.lower())
    if words and words[0] in QUESTION_OPENERS:
        return True
    lowered = text.lower()
    if lowered.startswith(_LEAD_INS) and "," in text:
        after = _WORD.findall(text.split(",", 1)[1].lower())
        return bool(after) and after[0] in QUESTION_OPENERS
    return False


def is_refusal(answer: str) -> bool:
    """Whether the answer declines to answer ('unable to', 'as an AI', ...)."""
    text = " ".join(answer.lower().replace("’", "'").split())
    return any(phrase in text for phrase in REFUSALS)


def numbered_steps(reasoning: str) -> int:
    """How many steps are numbered 1, 2, ... k in a row ('1.', '2)', '(3)', 'Step 4')."""
    found = {int(next(g for g in m.groups() if g)) for m in _STEP.finditer(reasoning)}
    k = 0
    while k + 1 in found:
        k += 1
    return k


def overlap(answer: str, reasoning: str) -> float | None:
    """Share of the answer's content words found in the reasoning (None: the answer has none)."""
    words = content_words(answer)
    if not words:
        return None
    seen = set(content_words(reasoning))
    return sum(w in seen for w in words) / len(words)


def _check_mcq(item: QAItem, rules: ValidationRules) -> list[str]:
    reasons = []
    options = [" ".join((o or "").split()) for o in item.options]
    if (
        len(options) != len(LETTERS)
        or not all(options)
        or len({normalize(o) for o in options}) != len(options)
    ):
        reasons.append("mcq_options")
    letter = answer_letter(item.answer)
    if letter is None or LETTERS.index(letter) >= len(options) or not options[LETTERS.index(letter)]:
        reasons.append("mcq_answer")
    if item.reasoning.strip() and numbered_steps(item.reasoning) < rules.min_steps:
        reasons.append("mcq_steps")
    return reasons


def check_item(item: QAItem, context: ImageContext, rules: ValidationRules) -> list[str]:
    """Reason codes for every rule `item` fails (duplicates aside); an empty list means it passes."""
    question, answer, reasoning = item.question.strip(), item.answer.strip(), item.reasoning.strip()
    reasons = []
    if not (question and answer and reasoning):
        reasons.append("missing_field")
    if question:
        n = word_count(question)
        if n < rules.min_question_words:
            reasons.append("question_too_short")
        elif n > rules.max_question_words:
            reasons.append("question_too_long")
        if rules.question_form and not is_question(question):
            reasons.append("not_a_question")
    text = answer_text(item).strip() if answer else ""
    if answer:
        n = word_count(text or answer)
        if n < rules.min_answer_words:
            reasons.append("answer_too_short")
        elif n > rules.max_answer_words:
            reasons.append("answer_too_long")
        if is_refusal(text):
            reasons.append("refusal")
    if reasoning and word_count(reasoning) < rules.min_reasoning_words:
        reasons.append("reasoning_too_short")
    if item.options:
        reasons.extend(_check_mcq(item, rules))
    if text and reasoning and rules.min_overlap > 0:
        share = overlap(text, reasoning)
        if share is not None and share < rules.min_overlap:
            reasons.append("low_grounding")
    if rules.image_grounding and context.has_features and (question or reasoning):
        mentioned = set(content_words(f"{question} {reasoning}"))
        if not mentioned & context.words:
            reasons.append("ungrounded")
    return list(dict.fromkeys(reasons))
