"""A model's reply to Q/A items: find the JSON however it is wrapped, repair what is safe, check its shape.

Models wrap JSON in ```json fences, put prose around it, think aloud first (`<think>…</think>`), return a
bare list instead of {"questions": [...]}, or write Python-style dicts (single quotes, trailing commas,
True/None). All of that is recovered here. Only the structure is checked (fields present, 4 options, a
letter answer, enough items); whether an item is any good is `vl validate`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

from vlcli.steps.synth.qa import LETTERS, QAItem

Mode = Literal["qa", "mcq"]
MODES: tuple[Mode, ...] = ("qa", "mcq")

MAX_REPLY_CHARS = 200_000  # longer replies are cut before parsing (bounds the work on runaway output)
MAX_STARTS = 64  # candidate JSON starts tried per reply (garbage full of brackets stays cheap)

_LIST_KEYS = ("questions", "items", "qa", "qa_pairs", "mcqs", "mcq", "data", "results", "output")
_QUESTION_KEYS = ("question", "q", "query")
_ANSWER_KEYS = ("answer", "correct_answer", "correct_option", "correct", "final_answer", "solution_letter")
_REASONING_KEYS = ("reasoning", "rationale", "explanation", "reasoning_steps", "steps", "solution")
_OPTION_KEYS = ("options", "choices", "answers")
_THINKING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*(?:json5?|javascript|js|python)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_LETTER_ONLY = re.compile(
    r"^\s*(?:(?:the\s+)?(?:correct\s+)?(?:answer|option)(?:\s+is)?\s*[:：]?\s*)?[(\[]?([A-Da-d])[)\].:]?\s*$",
    re.IGNORECASE,
)
_LETTER_LABEL = re.compile(r"^\s*(?:answer\s*[:：]?\s*)?[(\[]?([A-D])[)\].:](?:\s|$)")  # "B) 12", "(C) red"
_OPEN = re.compile(r"[\[{]")
_OPTION_PREFIX = re.compile(r"^\s*[(\[]?([A-Da-d])\s*[)\].:]\s+")
_NUMBERED = re.compile(r"^\s*(?:step\s*)?\d+\s*[.):]", re.IGNORECASE)


class ReplyError(ValueError):
    """A reply that does not hold usable items; the message is one line saying why."""


# --- finding the JSON ----------------------------------------------------------------------------


def json_values(text: str) -> Iterator[Any]:
    """Every JSON object or array the reply holds, most likely first: the whole reply, fenced blocks,
    then each balanced {…} or […] in the text (repaired when plain JSON does not parse)."""
    text = _THINKING.sub("", text[:MAX_REPLY_CHARS])
    seen: set[str] = set()
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        if candidate and candidate not in seen:
            seen.add(candidate)
            value = _loads(candidate)
            if isinstance(value, (dict, list)):
                yield value
    yield from _embedded(text, seen)


def _embedded(text: str, seen: set[str]) -> Iterator[Any]:
    """Balanced spans starting at `{` or `[`, left to right, skipping spans inside one already parsed."""
    position, starts = 0, 0
    while starts < MAX_STARTS:
        match = _OPEN.search(text, position)
        if match is None:
            return
        starts += 1
        end = _balanced_end(text, match.start())
        if end is None:
            position = match.start() + 1
            continue
        span = text[match.start() : end]
        value = None if span in seen else _loads(span)
        if isinstance(value, (dict, list)):
            seen.add(span)
            yield value
            position = end
        else:
            position = match.start() + 1


def _loads(text: str) -> Any:
    """Plain JSON (control characters allowed in strings), else the safely repaired text, else None."""
    for attempt in (text, _repair(text)):
        try:
            return json.loads(attempt, strict=False)
        except (ValueError, RecursionError):
            continue
    return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing the one at `start` (quotes respected), or None."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch if ch == '"' or not _is_apostrophe(text, i) else ""
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _is_apostrophe(text: str, i: int) -> bool:
    """A quote between two letters (don't, dog's) is prose, not the start of a string."""
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


_PY_WORDS = {"True": "true", "False": "false", "None": "null"}


def _repair(text: str) -> str:
    """Python-style literals as JSON: single-quoted strings, trailing commas, True/False/None.

    Only rewrites outside double-quoted strings, so valid JSON content is never touched."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i, '"')
            out.append(text[i:end])
            i = end
        elif ch == "'":
            end = _string_end(text, i, "'")
            body = text[i + 1 : end - 1] if end - i >= 2 and text[end - 1] == "'" else text[i + 1 : end]
            out.append(_double_quoted(body))
            i = end
        elif ch == ",":
            j = i + 1
            while j < n and text[j].isspace():
                j += 1
            if j >= n or text[j] not in "]}":
                out.append(ch)
            i += 1
        elif ch.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_PY_WORDS.get(word, word))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _double_quoted(body: str) -> str:
    """A single-quoted string's body as a JSON string: \\' becomes ', " is escaped, other escapes kept."""
    out, i = ['"'], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("'" if nxt == "'" else ch + nxt if nxt in _JSON_ESCAPES else "\\\\" + nxt)
            i += 2
            continue
        out.append('\\"' if ch == '"' else ch)
        i += 1
    out.append('"')
    return "".join(out)


_JSON_ESCAPES = frozenset('"\\/bfnrtu')


def _string_end(text: str, start: int, quote: str) -> int:
    """Index just past the string opened at `start` (to the end of the text if it never closes)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


# --- checking the shape ----------------------------------------------------------------------------


def parse_items(text: str | None, mode: Mode, count: int) -> list[QAItem]:
    """The first `count` items of a reply, or ReplyError saying why the reply cannot be used."""
    if not text or not text.strip():
        raise ReplyError("empty reply")
    first: ReplyError | None = None
    for value in json_values(text):
        try:
            return items_from(value, mode, count)
        except ReplyError as exc:
            # Prefer the reason given for a value that held questions at all over a stray {…}.
            if first is None or (_holds_questions(value) and not first.args[0].startswith("question")):
                first = exc
    if first is not None:
        raise first
    if re.search(r"[\[{]", text) and not re.search(r"[\]}]\s*(```)?\s*$", text.strip()):
        raise ReplyError("no complete JSON (the reply may have hit --max-tokens)")
    raise ReplyError("no JSON found")


def _holds_questions(value: Any) -> bool:
    try:
        return bool(_item_list(value))
    except ReplyError:
        return False


def items_from(value: Any, mode: Mode, count: int) -> list[QAItem]:
    """Items from a parsed JSON value (a list, {"questions": [...]}, or one item), structure checked."""
    raw = _item_list(value)
    if len(raw) < count:
        raise ReplyError(f"expected {count} question{'s' if count != 1 else ''}, got {len(raw)}")
    return [_item(entry, mode, n) for n, entry in enumerate(raw[:count], start=1)]


def _item_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        if any(isinstance(v, dict) for v in value):
            return value  # entries that are not objects are reported one by one
        raise ReplyError("a JSON list, but not of question objects")
    if not isinstance(value, dict):
        raise ReplyError("JSON holds no questions")
    keys = {str(k).strip().lower(): v for k, v in value.items()}
    for key in _LIST_KEYS:
        if isinstance(keys.get(key), list):
            return list(keys[key])
    if any(k in keys for k in _QUESTION_KEYS):
        return [value]
    lists = [v for v in keys.values() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)]
    if len(lists) == 1:
        return lists[0]
    raise ReplyError('JSON holds no questions (expected {"questions": [...]})')


def _field(item: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in item:
            return item[name]
    return None


def _text(value: Any) -> str | None:
    """A scalar as text (numbers too); None for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _item(entry: Any, mode: Mode, n: int) -> QAItem:
    if not isinstance(entry, dict):
        raise ReplyError(f"question {n} is not a JSON object")
    item = {str(k).strip().lower(): v for k, v in entry.items()}
    question = _text(_field(item, _QUESTION_KEYS))
    if not question:
        raise ReplyError(f"question {n} has no question text")
    reasoning = _reasoning(_field(item, _REASONING_KEYS))
    if not reasoning:
        raise ReplyError(f"question {n} has no reasoning")
    answer = _field(item, _ANSWER_KEYS)
    if mode == "mcq":
        options = _options(_field(item, _OPTION_KEYS), n)
        return QAItem(question, _letter(answer, options, n), reasoning, options)
    text = _text(answer)
    if not text:
        raise ReplyError(f"question {n} has no answer")
    return QAItem(question, text, reasoning)


def _reasoning(value: Any) -> str | None:
    """Reasoning as text; a list of steps is numbered one per line (unless already numbered)."""
    if isinstance(value, list):
        steps = [s for s in (_text(v) for v in value) if s]
        if not steps:
            return None
        if all(_NUMBERED.match(s) for s in steps):
            return "\n".join(steps)
        return "\n".join(f"{i}. {s}" for i, s in enumerate(steps, start=1))
    return _text(value) or None


def _options(value: Any, n: int) -> list[str]:
    """Exactly four option texts, in A-D order; a leading 'A) ' label matching the position is dropped."""
    if isinstance(value, dict):
        by_letter = {str(k).strip().strip("().").upper(): v for k, v in value.items()}
        if set(by_letter) != set(LETTERS):
            raise ReplyError(f"question {n}: options must be labelled A, B, C and D")
        value = [by_letter[letter] for letter in LETTERS]
    if not isinstance(value, list):
        raise ReplyError(f"question {n} has no list of options")
    if len(value) != len(LETTERS):
        raise ReplyError(f"question {n} has {len(value)} options (need {len(LETTERS)})")
    options = []
    for letter, raw in zip(LETTERS, value):
        text = _text(raw)
        if text is None:
            raise ReplyError(f"question {n}: option {letter} is not text")
        label = _OPTION_PREFIX.match(text)
        if label and label.group(1).upper() == letter:
            text = text[label.end() :].strip()
        if not text:
            raise ReplyError(f"question {n}: option {letter} is empty")
        options.append(text)
    return options


def _letter(value: Any, options: list[str], n: int) -> str:
    """The answer as one letter A-D: 'B', 'b', '(B)', 'B) text', 'Answer: B', or an option's exact text."""
    text = _text(value)
    if not text:
        raise ReplyError(f"question {n} has no answer")
    match = _LETTER_ONLY.match(text) or _LETTER_LABEL.match(text)
    if match:
        return match.group(1).upper()
    folded = [o.casefold() for o in options]
    if text.casefold() in folded:  # the option's text instead of its letter
        return LETTERS[folded.index(text.casefold())]
    shown = text if len(text) <= 20 else text[:19] + "…"
    raise ReplyError(f"question {n}: answer {shown!r} is not a letter A-D")


# --- what to ask for ---------------------------------------------------------------------------------


def reply_schema(mode: Mode, count: int) -> dict[str, Any]:
    """The JSON schema of a reply: {"questions": [exactly `count` items of the mode's shape]}."""
    props: dict[str, Any] = {"question": {"type": "string", "minLength": 1}}
    required = ["question"]
    if mode == "mcq":
        props["options"] = {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": len(LETTERS),
            "maxItems": len(LETTERS),
        }
        props["answer"] = {"type": "string", "enum": list(LETTERS)}
        required += ["options", "answer"]
    else:
        props["answer"] = {"type": "string", "minLength": 1}
        required.append("answer")
    props["reasoning"] = {"type": "string", "minLength": 1}
    required.append("reasoning")
    item = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": item, "minItems": count, "maxItems": count}},
        "required": ["questions"],
        "additionalProperties": False,
    }
