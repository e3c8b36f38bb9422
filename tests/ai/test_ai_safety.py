"""Safety console: profanity, spam, CAN-SPAM, GDPR rules, the verdict, and the scan_content / safety_stats jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from pydantic import ValidationError
from sqlalchemy import insert, select

from models.ai import AISafetyLog, SafetyAction, SafetyChannel
from models.core import JobStatus
from tasks.ai import console
from tasks.ai.safety import ScanContext, find_profanity, scan, spam_score
from tests.ai.conftest import run_ai
from workers.ledger import validate_args

COMPLIANT_FOOTER = "\n\nArtisan Inc., 548 Market Street, San Francisco, CA 94104. Unsubscribe: https://artisan.test/u/1"


def _types(content: str, context: ScanContext | None = None, channel: SafetyChannel = SafetyChannel.EMAIL) -> set[str]:
    return {f.finding_type for f in scan(content, channel, context or ScanContext(subject="Pricing")).findings}


def test_profanity_is_masked_but_innocent_words_are_not() -> None:
    assert [f.detail["preview"] for f in find_profanity("This is bullshit, honestly.")] == ["b*******"]
    assert find_profanity("Scunthorpe class assessment on the cocktail menu; pass the shiitake") == []


def test_plain_sales_email_is_allowed() -> None:
    verdict = scan(
        "Hi Dana, following up on pricing for forty seats as promised." + COMPLIANT_FOOTER,
        SafetyChannel.EMAIL,
        ScanContext(subject="Pricing for forty seats"),
    )
    assert verdict.action == SafetyAction.ALLOW and verdict.findings == []


def test_spam_rules_are_weighted() -> None:
    score, rules = spam_score("ACT NOW!!! 100% FREE, GUARANTEED winner. Click here: bit.ly/x", "YOU WON")
    assert score >= 6 and {"url_shortener", "repeated_punctuation", "capitals_ratio_high"} <= {
        r.split(":")[0] for r in rules
    }
    assert spam_score("Thanks for the call today about pricing.", "Pricing")[0] < 3
    mismatch = spam_score("Here are the onboarding steps for your team.", "Quarterly invoice discrepancy")[1]
    assert "subject_body_mismatch" in mismatch
    verdict = scan(
        "ACT NOW!!! 100% FREE money, guaranteed. bit.ly/x" + COMPLIANT_FOOTER,
        SafetyChannel.EMAIL,
        ScanContext(subject="FREE MONEY INSIDE"),
    )
    assert verdict.blocked and any(f.finding_type == "spam" and f.severity.value == "high" for f in verdict.findings)


def test_can_spam_requires_opt_out_address_and_honest_subject_for_commercial_email() -> None:
    body = "Hi Dana, following up on pricing for forty seats."
    assert {"missing_unsubscribe", "missing_postal_address"} <= _types(body)
    with_header = ScanContext(subject="Pricing", headers={"List-Unsubscribe": "<mailto:u@artisan.test>"})
    assert "missing_unsubscribe" not in _types(body, with_header)
    assert "missing_postal_address" not in _types(
        body, ScanContext(subject="Pricing", sender_postal_address="548 Market St")
    )
    assert "deceptive_subject" in _types(body + COMPLIANT_FOOTER, ScanContext(subject="Re: our call"))
    assert "deceptive_subject" not in _types(
        body + COMPLIANT_FOOTER, ScanContext(subject="Re: our call", in_reply_to="<msg-1@x>")
    )
    assert "deceptive_subject" in _types(body + COMPLIANT_FOOTER, ScanContext(subject="Final notice: payment overdue"))
    # Not commercial email: CAN-SPAM does not apply.
    assert not _types(body, ScanContext(subject="Pricing"), channel=SafetyChannel.LINKEDIN)
    assert not _types(body, ScanContext(subject="Pricing", commercial=False))


def test_gdpr_special_categories_and_lawful_basis() -> None:
    findings = scan(
        "Sorry to hear about your diabetes diagnosis." + COMPLIANT_FOOTER,
        SafetyChannel.EMAIL,
        ScanContext(subject="diagnosis"),
    ).findings
    [special] = [f for f in findings if f.finding_type == "special_category_data"]
    assert special.detail["categories"] == ["health"] and special.action == SafetyAction.FLAG
    blocked = scan("Hello!" + COMPLIANT_FOOTER, SafetyChannel.EMAIL, ScanContext(subject="Hello", gdpr_applies=True))
    assert blocked.blocked and "no_lawful_basis" in {f.finding_type for f in blocked.findings}
    ok = ScanContext(subject="Hello", gdpr_applies=True, contact_lawful_basis="legitimate_interests")
    assert "no_lawful_basis" not in _types("Hello!" + COMPLIANT_FOOTER, ok)


def test_modify_returns_content_redacted() -> None:
    verdict = scan(
        "Pay with 4111 1111 1111 1111 you idiot, this is shit." + COMPLIANT_FOOTER,
        SafetyChannel.EMAIL,
        ScanContext(subject="Payment"),
    )
    assert verdict.action == SafetyAction.MODIFY
    assert verdict.modified_content is not None
    assert "4111" not in verdict.modified_content and "[REDACTED CARD]" in verdict.modified_content
    assert "s***" in verdict.modified_content and "548 Market Street" in verdict.modified_content


@pytest.mark.usefixtures("celery_worker")
def test_scan_content_job_logs_one_row_per_finding_and_returns_the_verdict(make_workspace: Any, session: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai(
        "ai.scan_content",
        workspace_id=workspace_id,
        content="Card 4111 1111 1111 1111. Call (650) 253-0000." + COMPLIANT_FOOTER,
        channel="email",
        context={"subject": "Card details"},
    )
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["verdict"] == "modify" and job.result["allowed"] is True and job.result["blocked"] is False
    assert "[REDACTED CARD]" in job.result["modified_content"]
    rows = (
        session.execute(
            select(AISafetyLog).where(AISafetyLog.workspace_id == workspace_id).order_by(AISafetyLog.ordinal)
        )
        .scalars()
        .all()
    )
    assert [(r.category.value, r.finding_type, r.severity.value, r.action.value) for r in rows] == [
        ("pii", "credit_card", "critical", "modify"),
        ("pii", "phone_number", "low", "allow"),
    ]
    assert all(r.scan_id == job.id and r.review_status.value == "pending" for r in rows)
    assert all("4111" not in str(r.detail) for r in rows)

    # Re-running the same scan (same scan id) inserts nothing twice.
    console.scan_content(
        session,
        workspace_id=workspace_id,
        scan_id=job.id,
        content="Card 4111 1111 1111 1111. Call (650) 253-0000." + COMPLIANT_FOOTER,
        channel=SafetyChannel.EMAIL,
        context=ScanContext(subject="Card details"),
    )
    session.commit()
    assert len(session.execute(select(AISafetyLog.id).where(AISafetyLog.workspace_id == workspace_id)).all()) == 2


@pytest.mark.usefixtures("celery_worker")
def test_blocked_message_and_bad_arguments(make_workspace: Any) -> None:
    workspace_id = make_workspace()
    job = run_ai(
        "ai.scan_content",
        workspace_id=workspace_id,
        content="Quick question about pricing?",
        context={"subject": "Re: pricing", "gdpr_applies": True},
    )
    assert job.result["blocked"] is True and job.result["modified_content"] is None
    # Bad arguments are refused before anything is enqueued (the API answers 422 naming the field).
    with pytest.raises(ValidationError, match="channel"):
        validate_args("ai.scan_content", {"workspace_id": workspace_id, "content": "hi", "channel": "carrier-pigeon"})


def test_safety_stats_rolls_up_by_day_type_and_severity_in_the_workspace_timezone(
    make_workspace: Any, session: Any
) -> None:
    workspace_id = make_workspace(timezone="America/Los_Angeles")
    scan_id = uuid.uuid4()
    base = datetime(2026, 11, 12, 6, 0, tzinfo=UTC)  # 22:00 on Nov 11 in Los Angeles
    rows = [
        (base, "pii", "credit_card", "critical", "modify"),
        (base + timedelta(hours=3), "pii", "credit_card", "critical", "modify"),  # 01:00 on Nov 12 there
        (base + timedelta(hours=10), "spam", "spam", "medium", "flag"),
        (base - timedelta(days=40), "gdpr", "no_lawful_basis", "critical", "block"),  # outside the window
    ]
    session.execute(
        insert(AISafetyLog),
        [
            {
                "workspace_id": workspace_id,
                "scan_id": scan_id,
                "ordinal": i,
                "channel": "email",
                "category": c,
                "finding_type": t,
                "severity": s,
                "action": a,
                "content_hash": "0" * 64,
                "created_at": at,
            }
            for i, (at, c, t, s, a) in enumerate(rows)
        ],
    )
    session.commit()
    with freeze_time("2026-11-20T12:00:00Z"):
        stats = console.safety_stats(session, workspace_id=workspace_id, days=30)
    assert stats["total"] == 3 and stats["pending_review"] == 3
    assert stats["by_day"] == [
        {
            "day": "2026-11-11",
            "category": "pii",
            "type": "credit_card",
            "severity": "critical",
            "action": "modify",
            "count": 1,
        },
        {
            "day": "2026-11-12",
            "category": "pii",
            "type": "credit_card",
            "severity": "critical",
            "action": "modify",
            "count": 1,
        },
        {"day": "2026-11-12", "category": "spam", "type": "spam", "severity": "medium", "action": "flag", "count": 1},
    ]
    assert stats["totals"]["severity"] == {"critical": 2, "medium": 1}


def test_safety_stats_covers_whole_local_days_across_a_dst_change(make_workspace: Any, session: Any) -> None:
    """Seven days ending Thursday 5 Nov 2026 in Los Angeles start at midnight on Friday 30 Oct (PDT, UTC-7), though
    the clocks went back on Sunday 1 Nov: not 7 x 24 hours before now, which would add a partial eighth day."""
    workspace_id = make_workspace(timezone="America/Los_Angeles")
    findings = [
        datetime(2026, 10, 30, 5, 0, tzinfo=UTC),  # 29 Oct 22:00 PDT: the day before the window
        datetime(2026, 10, 30, 7, 30, tzinfo=UTC),  # 30 Oct 00:30 PDT: the window's first half hour
        datetime(2026, 11, 2, 7, 30, tzinfo=UTC),  # 1 Nov 23:30 PST (UTC-8 since 02:00 that day)
        datetime(2026, 11, 2, 8, 30, tzinfo=UTC),  # 2 Nov 00:30 PST
    ]
    session.execute(
        insert(AISafetyLog),
        [
            {
                "workspace_id": workspace_id,
                "scan_id": uuid.uuid4(),
                "ordinal": 0,
                "channel": "email",
                "category": "spam",
                "finding_type": "spam",
                "severity": "medium",
                "action": "flag",
                "content_hash": "0" * 64,
                "created_at": at,
            }
            for at in findings
        ],
    )
    session.commit()
    with freeze_time("2026-11-05T20:00:00Z"):
        stats = console.safety_stats(session, workspace_id=workspace_id, days=7)
    assert stats["since"] == "2026-10-30T07:00:00+00:00"
    assert [(row["day"], row["count"]) for row in stats["by_day"]] == [
        ("2026-10-30", 1),
        ("2026-11-01", 1),
        ("2026-11-02", 1),
    ]
    with freeze_time("2026-11-05T20:00:00Z"):
        today_only = console.safety_stats(session, workspace_id=workspace_id, days=1)
    assert today_only["since"] == "2026-11-05T08:00:00+00:00" and today_only["total"] == 0


@pytest.mark.usefixtures("celery_worker")
def test_safety_stats_job(make_workspace: Any) -> None:
    job = run_ai("ai.safety_stats", workspace_id=make_workspace(), days=7)
    assert job.status == JobStatus.SUCCEEDED and job.result["total"] == 0
