"""The adoption measure on real-looking pairs: what an agent does to a draft before sending it."""

from __future__ import annotations

import pytest

from connector.engine.adoption import Adoption, judge, reply_text, similarity

ANSWER = (
    "You can reset your password from the sign-in page: choose 'Forgot password', enter the "
    "e-mail address of your account and follow the link we send you. The link is valid for "
    "24 hours. If the e-mail does not arrive within a few minutes, check your spam folder or "
    "ask us to send it again.\n\n"
    "Once you are signed in, you can also turn on two-factor authentication under Settings, "
    "Security, so that nobody else can change your password."
)
TEMPLATE = "{answer}\n\n— {marker}"
MARKER = "— AI draft, Uppzy ref req_0a5d2f346baa9455"


def outcome(reply: str, template: str = TEMPLATE) -> Adoption:
    return judge(ANSWER, reply, template, 0.8, 0.4)[0]


def test_the_draft_sent_as_it_was_is_used_marker_or_not() -> None:
    assert outcome(f"{ANSWER}\n\n{MARKER}") is Adoption.USED
    assert outcome(ANSWER) is Adoption.USED
    assert judge(ANSWER, f"{ANSWER}\n\n{MARKER}", TEMPLATE, 0.8, 0.4)[1] == 1.0


def test_a_signature_added_or_a_greeting_changed_is_still_used() -> None:
    assert outcome(f"Hi Maria,\n\n{ANSWER}\n\nBest regards,\nTom from Support") is Adoption.USED
    changed = ANSWER.replace("You can reset", "Sure thing! You can reset")
    assert outcome(changed) is Adoption.USED


def test_a_paragraph_removed_is_an_edit() -> None:
    second = ANSWER.split("\n\n")[1]  # the main paragraph removed, the tip kept
    score = similarity(ANSWER, second)
    assert 0.4 <= score < 0.8
    assert outcome(second) is Adoption.EDITED


def test_a_different_answer_is_discarded() -> None:
    other = ("Thanks for writing in. We have passed your question to our billing team, who "
             "will get back to you about the refund by Friday.")
    assert outcome(other) is Adoption.DISCARDED
    assert outcome("") is Adoption.DISCARDED


def test_the_template_wording_is_not_counted_as_an_edit() -> None:
    template = ("Suggested reply (confidence {confidence_level} {confidence_score}):\n"
                "{answer}\n\nPlease review before sending.\n— {marker}")
    sent = (f"Suggested reply (confidence high 0.93):\n{ANSWER}\n\n"
            f"Please review before sending.\n{MARKER}")
    assert reply_text(sent, template).strip() == ANSWER
    assert outcome(sent, template) is Adoption.USED


def test_a_pasted_marker_alone_does_not_make_a_reply_used() -> None:
    assert outcome(f"We will call you tomorrow.\n{MARKER}") is Adoption.DISCARDED


@pytest.mark.parametrize(("score", "expected"), [
    (1.0, Adoption.USED), (0.8, Adoption.USED), (0.79, Adoption.EDITED),
    (0.4, Adoption.EDITED), (0.39, Adoption.DISCARDED), (0.0, Adoption.DISCARDED),
])
def test_thresholds_are_inclusive(score: float, expected: Adoption) -> None:
    from connector.engine.adoption import classify

    assert classify(score, 0.8, 0.4) is expected


# ----- the report's arithmetic ------------------------------------------------------------------
def _row(score: float | None, adoption: str | None, level: str | None = None):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from connector.store.reports import ReportRow

    at = datetime(2026, 12, 1, tzinfo=UTC)
    return ReportRow("zd", "posted", "draft", adoption, level, score, None, at, at, None, None)


def test_bands_read_scores_as_fractions_or_percentages_and_fall_back_to_levels() -> None:
    from connector.cli.report import band_of

    assert band_of(_row(0.55, None)) == "0.5-0.6"
    assert band_of(_row(55, None)) == "0.5-0.6"
    assert band_of(_row(1.0, None)) == "0.9-1.0"
    assert band_of(_row(None, None, "Medium")) == "medium"
    assert band_of(_row(None, None)) == "unknown"


def test_the_suggestion_is_the_edge_of_the_most_confident_mostly_discarded_band() -> None:
    from connector.cli.report import summarise

    rows = ([_row(0.95, "used")] * 8 + [_row(0.65, "discarded")] * 4 + [_row(0.65, "used")] * 2
            + [_row(0.45, "discarded")] * 3 + [_row(0.35, "discarded")] * 6)
    suggestion = summarise(rows)["suggested_min_confidence"]
    # 0.6-0.7 is 4 of 6 discarded (67 %), and has enough verdicts: everything below 0.7 goes.
    assert suggestion["value"] == 0.7
    assert suggestion["arithmetic"][1] == "0.6-0.7: 4 of 6 decided drafts discarded (67%)"


def test_no_suggestion_from_too_few_verdicts_or_from_pending_drafts() -> None:
    from connector.cli.report import summarise

    rows = [_row(0.45, "discarded")] * 4 + [_row(0.35, None)] * 20
    summary = summarise(rows)
    assert summary["suggested_min_confidence"]["value"] is None
    assert summary["adoption"]["pending"] == 20
