"""`vl validate`'s optional model checks: an LLM judge's score per item, and visual dependency (is an
MCQ answered right with the image every time, and no better than chance without it?).

Requests go through any `TextGenerator` (openai, vllm, transformers), all of a batch in one `generate`
call so the backend can run them concurrently. Transport failures come back as `CheckError`s per row;
a reply that says nothing usable is data (no score, a wrong answer), not an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from vlcli.backends.textgen import GenerationRequest, GenerationResult, TextGenerator, image_part, text_part
from vlcli.errors import UsageError
from vlcli.steps.synth.qa import LETTERS, QAItem
from vlcli.steps.validate.rules import answer_letter
from vlcli.text import one_line

HTTP_OPTIONS = ("base_url", "api_key_env", "concurrency")
BACKEND_OPTIONS = {  # which settings each built-in backend takes (plugins get the model and backend_options)
    "openai": HTTP_OPTIONS,
    "vllm": ("dtype", "trust_remote_code"),
    "transformers": ("device", "dtype", "trust_remote_code"),
}

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
}
LETTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": list(LETTERS)}},
    "required": ["answer"],
}

JUDGE_SYSTEM = "You review training data for vision-language models. You are strict and brief."
JUDGE_PROMPT = """Rate the question below, written about an image, from 1 (unusable) to 5 (excellent).
A 5 is clear and unambiguous, needs the image to answer, has exactly one correct answer, and its reasoning
is correct step by step and leads to that answer. Judge with what is known about the image.

What is known about the image:
{context}

Question: {question}
{options}Answer: {answer}
Reasoning: {reasoning}

Reply with JSON only: {{"score": <1-5>, "reason": "<one sentence>"}}"""
MCQ_PROMPT = """Answer this multiple-choice question about the image.

{question}
{options}

Reply with JSON only: {{"answer": "<the letter of the correct option>"}}"""


@dataclass(frozen=True)
class CheckSettings:
    """Which model checks run and on which text-generation backend (they decide the stored results)."""

    judge: bool = False
    visual_dependency: bool = False
    backend: str = "openai"
    model: str | None = None
    base_url: str | None = None  # openai: None is the backend's default
    api_key_env: str | None = None  # openai: the variable holding the key (None: the backend's default)
    concurrency: int | None = None  # openai: None is the backend's default
    device: str = "auto"  # transformers
    dtype: str = "auto"  # transformers, vllm
    trust_remote_code: bool = False  # transformers, vllm
    rotations: int = 4  # option orders asked per MCQ, each with and without the image
    image_size: int = 1024  # long side of the view sent to the VLM (as `vl synth --image-size`)
    max_tokens: int = 256
    backend_options: dict[str, Any] = field(default_factory=dict)  # extra options for the backend

    def __post_init__(self) -> None:
        if not 1 <= self.rotations <= len(LETTERS):
            raise UsageError(f"--rotations must be between 1 and {len(LETTERS)}")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.image_size < 32:
            raise UsageError("--image-size must be at least 32 pixels")
        if self.enabled and not self.model:
            raise UsageError("--judge and --visual-dependency ask a model: name it with --model")
        given = [k for k in HTTP_OPTIONS if getattr(self, k) is not None]
        if given and self.backend != "openai":
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags} only apply to --backend openai, not {self.backend!r}")

    @property
    def enabled(self) -> bool:
        """Whether any model check runs."""
        return self.judge or self.visual_dependency

    def generator_options(self) -> dict[str, Any]:
        """Options for `create("generator", backend, ...)`: only those the backend takes, only when set."""
        names = BACKEND_OPTIONS.get(self.backend, ())
        values = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        return {"model": self.model, **values, **self.backend_options}


class CheckError(Exception):
    """A model check could not run for a row (the backend failed); the message is one line."""


@dataclass
class RowInput:
    """What the checks need of one row: its items, the image's known features, the view's bytes."""

    items: list[QAItem]
    context: str = ""
    image: bytes | None = None
    mime: str = "image/jpeg"


@dataclass
class RowChecks:
    """One row's results: a score per item (None: no score in the reply) and per MCQ the visual counts."""

    judge: list[int | None] | None = None
    visual: list[dict[str, int] | None] | None = None
    error: str | None = None


def context_text(ocr_text: str | None, labels: list[str], caption: str | None, limit: int = 1500) -> str:
    """The image's features as the judge reads them."""
    lines = []
    if caption:
        lines.append(f"Caption: {caption}")
    if labels:
        lines.append("Objects: " + ", ".join(dict.fromkeys(labels)))
    if ocr_text:
        lines.append("Text in the image: " + one_line(ocr_text, limit))
    return "\n".join(lines) or "(nothing: judge the text alone)"


def _options_block(options: list[str]) -> str:
    return "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, options))


def judge_request(item: QAItem, context: str, max_tokens: int = 256) -> GenerationRequest:
    """The chat asking the judge for a 1-5 score of one item."""
    options = f"Options:\n{_options_block(item.options)}\n" if item.options else ""
    prompt = JUDGE_PROMPT.format(
        context=context,
        question=item.question,
        options=options,
        answer=item.answer,
        reasoning=item.reasoning,
    )
    return GenerationRequest(
        messages=[{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}],
        json_schema=JUDGE_SCHEMA,
        max_tokens=max_tokens,
        temperature=0.0,
    )


def rotated(item: QAItem, shift: int) -> tuple[list[str], str]:
    """The options moved `shift` places up (the first goes last) and the letter the answer has then."""
    options = item.options[shift:] + item.options[:shift]
    letter = answer_letter(item.answer)
    if letter is None or LETTERS.index(letter) >= len(item.options):
        raise ValueError("not a multiple-choice item with a valid answer letter")
    return options, LETTERS[(LETTERS.index(letter) - shift) % len(item.options)]


def mcq_request(
    question: str, options: list[str], image: bytes | None, mime: str, max_tokens: int = 64
) -> GenerationRequest:
    """Ask for the letter of the right option, with the image or (image=None) without it."""
    prompt = MCQ_PROMPT.format(question=question, options=_options_block(options))
    content: Any = [image_part(image, mime), text_part(prompt)] if image is not None else prompt
    return GenerationRequest(
        messages=[{"role": "user", "content": content}],
        json_schema=LETTER_SCHEMA,
        max_tokens=max_tokens,
        temperature=0.0,
    )


def visual_applies(item: QAItem) -> bool:
    """Visual dependency is asked of MCQs with 4 options and a valid answer letter."""
    letter = answer_letter(item.answer)
    return len(item.options) == len(LETTERS) and letter is not None and all(o.strip() for o in item.options)


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a reply (fences and prose around it are ignored)."""
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            value = json.loads(match.group(0))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_score(text: str) -> int | None:
    """A 1-5 score from a judge's reply: JSON {"score": n}, 'score: n', or a bare digit; else None."""
    value = (_json_object(text) or {}).get("score")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value):
        return int(value) if 1 <= value <= 5 else None
    match = re.search(r"score\D{0,5}([1-5])\b", text, re.IGNORECASE) or re.fullmatch(r"\s*([1-5])\s*", text)
    return int(match.group(1)) if match else None


def parse_letter(text: str) -> str | None:
    """The option letter a reply picks: JSON {"answer": "B"}, 'B', '(B) red', 'The answer is B'; else None."""
    value = (_json_object(text) or {}).get("answer")
    for candidate in [value, text] if isinstance(value, str) else [text]:
        letter = answer_letter(candidate)
        if letter is not None:
            return letter
        labelled = re.match(r"\s*\(?([A-D])[).:]\s", candidate + " ")
        if labelled:
            return labelled.group(1)
    match = re.search(r"(?i:answer|option)\s*(?i:is|:)?\s*\(?([A-D])\b", text)
    return match.group(1) if match else None


def visual_verdict(result: dict[str, int] | None) -> list[str]:
    """Reasons a visual-dependency result fails: wrong with the image, or better than chance without."""
    if result is None:
        return []
    reasons = []
    if result["correct_with_image"] < result["rotations"]:
        reasons.append("image_answer_wrong")
    if result["correct_without_image"] * len(LETTERS) > result["rotations"]:
        reasons.append("answerable_without_image")
    return reasons


def judge_verdict(score: int | None, threshold: float) -> list[str]:
    """Reasons a judge score fails: missing, or below the threshold."""
    if score is None:
        return ["judge_no_score"]
    return ["judge_score"] if score < threshold else []


@dataclass
class _Ask:
    row: int
    kind: str  # "judge" or "visual"
    item: int
    with_image: bool = False
    correct: str = ""


def run_checks(generator: TextGenerator, rows: list[RowInput], settings: CheckSettings) -> list[RowChecks]:
    """Every enabled check of every item of `rows`, in one `generate` call; results in row order."""
    asks: list[_Ask] = []
    requests: list[GenerationRequest] = []
    for r, row in enumerate(rows):
        for i, item in enumerate(row.items):
            if settings.judge:
                asks.append(_Ask(r, "judge", i))
                requests.append(judge_request(item, row.context, settings.max_tokens))
            if settings.visual_dependency and row.image is not None and visual_applies(item):
                for shift in range(settings.rotations):
                    options, correct = rotated(item, shift)
                    for with_image in (True, False):
                        asks.append(_Ask(r, "visual", i, with_image, correct))
                        image = row.image if with_image else None
                        requests.append(mcq_request(item.question, options, image, row.mime))
    results = generator.generate(requests) if requests else []
    if len(results) != len(requests):
        raise RuntimeError(f"the generator returned {len(results)} results for {len(requests)} requests")
    out = [_empty(row, settings) for row in rows]
    for ask, result in zip(asks, results):
        _record(out[ask.row], ask, result, settings)
    return out


def _empty(row: RowInput, settings: CheckSettings) -> RowChecks:
    checks = RowChecks()
    if settings.judge:
        checks.judge = [None] * len(row.items)
    if settings.visual_dependency:
        checks.visual = [
            {"rotations": settings.rotations, "correct_with_image": 0, "correct_without_image": 0}
            if row.image is not None and visual_applies(item)
            else None
            for item in row.items
        ]
    return checks


def _record(checks: RowChecks, ask: _Ask, result: GenerationResult, settings: CheckSettings) -> None:
    if not result.ok or result.text is None:
        if checks.error is None:
            checks.error = f"{ask.kind}: {result.error or 'no reply'}"
        return
    if ask.kind == "judge":
        assert checks.judge is not None
        checks.judge[ask.item] = parse_score(result.text)
        return
    assert checks.visual is not None
    counts = checks.visual[ask.item]
    if counts is not None and parse_letter(result.text) == ask.correct:
        counts["correct_with_image" if ask.with_image else "correct_without_image"] += 1
