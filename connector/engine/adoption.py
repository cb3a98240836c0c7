"""Was the draft used? One posted draft against the first public agent reply after it.

The measure is the one shadow mode uses (``similarity``): the share of words two texts have in
common in the same order (``difflib.SequenceMatcher`` over lower-cased words, so case,
punctuation and white space never count). It is cheap, needs no model, and reads the way an
agent edits: a signature or a greeting added to a long answer costs a little, a paragraph
removed costs its share of the words, a different answer shares almost nothing. Before
comparing, the agent's reply loses our marker line and every line of the draft template's own
wording (its text around ``{answer}``), so a draft sent as it was scores 1.0 whatever the
template adds.

Outcomes: ``used`` (similarity at least ``used_threshold``), ``edited`` (at least
``edited_threshold``), ``discarded`` (below), ``pending`` (no agent reply yet) and ``expired``
(no agent reply within the adoption window). A fallback note is never a draft, so it never gets
an outcome.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from enum import StrEnum

_WORD = re.compile(r"\w+")
_PLACEHOLDER = re.compile(r"\{(?:marker|confidence_level|confidence_score)\}")
_MARKER_LINE = re.compile(r"^\W*AI draft, Uppzy ref [A-Za-z0-9_.:-]+\W*$")


class Adoption(StrEnum):
    USED = "used"
    EDITED = "edited"
    DISCARDED = "discarded"
    PENDING = "pending"
    EXPIRED = "expired"


DECIDED = (Adoption.USED, Adoption.EDITED, Adoption.DISCARDED)


def similarity(answer: str, reply: str) -> float:
    """0..1: how much of the wording two texts share, in order (case and punctuation ignored).

    A rough measure on purpose: it tells a team whether the AI says what its agents say, not
    whether it says it equally well.
    """
    a = _WORD.findall(answer.lower())
    b = _WORD.findall(reply.lower())
    if not a or not b:
        return 0.0
    return round(SequenceMatcher(None, a, b, autojunk=False).ratio(), 3)


def template_lines(template: str) -> list[re.Pattern[str]]:
    """The template's own lines (those without ``{answer}``), as patterns over normalised
    words in which a placeholder (the marker, the confidence) stands for any words: what a
    reply sent from the draft carries besides the answer."""
    patterns = []
    for line in template.split("\n"):
        if "{answer}" in line:
            continue  # words sharing the answer's line count as a small edit
        parts = [" ".join(_WORD.findall(part.lower()))
                 for part in _PLACEHOLDER.split(line)]
        if any(parts):
            body = r"\s*(?:\w+(?: \w+)*)?\s*".join(re.escape(part) for part in parts)
            patterns.append(re.compile(rf"^\s*{body}\s*$"))
    return patterns


def reply_text(reply: str, template: str) -> str:
    """The agent's reply without our marker line and without the template's own lines."""
    own = template_lines(template)
    kept = [line for line in reply.splitlines()
            if not _MARKER_LINE.match(line.strip())
            and not any(p.match(_norm(line)) for p in own if _norm(line))]
    return "\n".join(kept)


def classify(score: float, used_threshold: float, edited_threshold: float) -> Adoption:
    if score >= used_threshold:
        return Adoption.USED
    if score >= edited_threshold:
        return Adoption.EDITED
    return Adoption.DISCARDED


def judge(answer: str, reply: str, template: str, used_threshold: float,
          edited_threshold: float) -> tuple[Adoption, float]:
    """The outcome of one draft and its score, from the answer Uppzy gave and the agent's
    reply as the helpdesk shows it."""
    score = similarity(answer, reply_text(reply, template))
    return classify(score, used_threshold, edited_threshold), score


def _norm(line: str) -> str:
    return " ".join(_WORD.findall(line.lower()))
