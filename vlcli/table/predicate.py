"""`--where` predicates: checked once to be a single SQL condition, so that `A AND (B)` always means A and B.

Lance parses a filter as `SELECT 1 FROM t WHERE <filter>` and keeps only the WHERE expression: text after
a `;`, an ORDER BY or a LIMIT was silently dropped, and `1=1) OR (1=1` escaped the parentheses it was
wrapped in. The check below reads the predicate the way Lance's tokenizer does (strings in '…', names in
"…" and `…`, a doubled quote standing for itself; a backslash escapes nothing) and rejects what could
change the meaning of a combination: several statements, unbalanced parentheses, comments, clauses that
are not a condition, and the tokens Lance's planner aborts on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vlcli.errors import QueryError

_QUOTES = {"'": "string", '"': "quoted name", "`": "quoted name"}
_FORBIDDEN = {
    ";": "one condition only: remove the ';' and what follows",
    "$": "'$' is not supported outside a quoted string",
    "?": "'?' is not supported outside a quoted string",
    "#": "'#' is not supported outside a quoted string (quote it: '...#...')",
    "{": "'{' is not supported outside a quoted string",
    "}": "'}' is not supported outside a quoted string",
    "\\": "a backslash is only allowed inside a quoted string",
}
_COMMENTS = ("--", "/*", "*/")
_CLAUSES = {"LIMIT", "HAVING", "UNION", "INTERSECT", "EXCEPT", "ORDER BY", "GROUP BY"}
_LEADING = {"WHERE", "SELECT"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Predicate:
    """A checked `--where` condition: one balanced SQL expression."""

    text: str

    def __str__(self) -> str:
        return self.text


def parse_where(where: str | Predicate | None, flag: str = "--where") -> Predicate | None:
    """Check `where` is a single SQL condition (None when empty); the error names `flag` and the fix."""
    if where is None or isinstance(where, Predicate):
        return where
    text = where.strip()
    if not text:
        return None
    problem = _problem(text)
    if problem is not None:
        raise QueryError(f"{flag} {where!r}: {problem}")
    return Predicate(text)


def conjoin(*parts: str | Predicate | None) -> str | None:
    """`(A) AND (B) …` of the parts given, None when there are none (user text must come as a Predicate)."""
    kept = [str(p).strip() for p in parts if p is not None and str(p).strip()]
    if len(kept) == 1:
        return kept[0]
    return " AND ".join(f"({p})" for p in kept) or None


def _problem(text: str) -> str | None:
    depth = 0
    words: list[tuple[int, str]] = []  # (depth, upper-cased word) outside quotes
    i = 0
    while i < len(text):
        char = text[i]
        if char in _QUOTES:
            if char == "'" and _prefixed(text, i):
                return (
                    "prefixed strings (N'...', E'...', X'...', B'...', r'...') are not supported: use '...'"
                )
            end = _closing(text, i)
            if end is None:
                return f"unterminated {_QUOTES[char]}: a closing {char} is missing"
            i = end + 1
            continue
        if text.startswith(_COMMENTS, i):
            return "comments (--, /* */) are not allowed"
        if char in _FORBIDDEN:
            return _FORBIDDEN[char]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return "a ')' closes a parenthesis that was never opened"
        elif match := _WORD.match(text, i):
            if i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"):
                words.append((depth, match.group().upper()))
            i = match.end()
            continue
        i += 1
    if depth > 0:
        return f"{depth} unclosed '(': add the missing ')'"
    return _clause_problem(words)


def _clause_problem(words: list[tuple[int, str]]) -> str | None:
    if words and words[0][1] in _LEADING:
        return f"give only the condition, without {words[0][1]} (e.g. \"dataset = 'charts'\")"
    top = [w for depth, w in words if depth == 0]
    for first, second in zip(top, [*top[1:], ""]):
        clause = f"{first} {second}" if second == "BY" else first
        if clause in _CLAUSES:
            return f"{clause} is not part of a condition: give only the condition"
    return None


def _closing(text: str, start: int) -> int | None:
    """Index of the quote closing the one at `start` ('' inside '…' is a quote, as "" and `` in names)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            if text[i + 1 : i + 2] == quote:
                i += 2
                continue
            return i
        i += 1
    return None


def _prefixed(text: str, quote: int) -> bool:
    """Whether the string at `quote` has a one-letter prefix such as N'…' (Lance's planner aborts on them)."""
    if quote == 0 or not text[quote - 1].isalpha():
        return False
    return quote == 1 or not (text[quote - 2].isalnum() or text[quote - 2] == "_")
