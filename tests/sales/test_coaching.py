"""Coaching: the offline rules, the LLM coach against a real OpenAI-compatible server, fallback and budget."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import select

from models.sales import AISalesboardMetric, CoachingSource
from tasks.ai.llm import LLMSettings
from tasks.sales import coaching
from tasks.sales.coaching import (
    LLM_REPS_PER_SYNC,
    CoachingCandidate,
    CoachingInput,
    LLMCoach,
    OfflineCoach,
    offline_recommendations,
    plan_coaching,
    situation_digest,
)
from tasks.sales.salesboard import sync_salesboard
from tests.sales.factory import ingest, item, make_reps
from tests.support.openai_server import CHAT_PATH, OpenAIServer, Reply
from workers.db import session_scope


def _inputs(percentiles: dict[str, float], **extra: Any) -> CoachingInput:
    components = {
        name: {"value": 10.0 * p, "percentile": p, "team_median": 5.0, "weight": 0.2} for name, p in percentiles.items()
    }
    return CoachingInput(
        performance_score=50.0,
        components=components,
        insights=extra.get("insights", {"strengths": [], "opportunities": [], "trends": {}}),
        conversion_rates=extra.get("conversion_rates", {}),
        funnel=extra.get("funnel", [{"stage": "emails_sent", "count": 0}]),
    )


MIDDLE = {"activity": 0.5, "reply_rate": 0.5, "meetings": 0.5, "pipeline": 0.5, "wins": 0.5}


def test_a_bottom_quartile_rep_is_told_what_to_fix_first() -> None:
    recs = offline_recommendations(
        _inputs(
            {**MIDDLE, "activity": 0.1, "reply_rate": 0.0, "wins": 0.0, "pipeline": 0.8},
            conversion_rates={"sent_to_opened": 0.2, "booked_to_held": 0.5},
            funnel=[{"stage": "emails_sent", "count": 120}, {"stage": "meetings_booked", "count": 8}],
        )
    )
    assert [r.priority for r in recs] == ["high", "high", "high", "medium"]
    assert [r.category for r in recs][:3] == ["activity", "messaging", "closing"]
    assert "subject lines" in recs[1].detail and "120 emails" in recs[1].detail
    assert recs[3].title == "Cut meeting no-shows"


def test_reply_rate_advice_needs_enough_sends_and_trends_are_noticed() -> None:
    few_sends = offline_recommendations(
        _inputs({**MIDDLE, "reply_rate": 0.0}, funnel=[{"stage": "emails_sent", "count": 5}])
    )
    assert all(r.category != "messaging" for r in few_sends)
    slipping = offline_recommendations(
        _inputs(MIDDLE, insights={"strengths": [], "trends": {"calls": {"change_vs_prior_7d": -0.5}}})
    )
    assert slipping[0].title == "Calls are slipping" and "50%" in slipping[0].detail


def test_a_rep_without_weak_spots_still_gets_one_recommendation() -> None:
    recs = offline_recommendations(_inputs({**MIDDLE, "wins": 0.4}))
    assert len(recs) == 1 and recs[0].title == "Keep the rhythm" and "won value" in recs[0].detail
    strong = offline_recommendations(_inputs({**MIDDLE, "meetings": 0.9}, insights={"strengths": ["meetings"]}))
    assert strong[0].category == "recognition" and "meetings" in strong[0].detail


def _candidate(
    row_id: int, activity: float = 0.1, source: CoachingSource | None = None, **fields: Any
) -> CoachingCandidate:
    inputs = _inputs({**MIDDLE, "activity": activity})
    return CoachingCandidate(
        row_id=row_id,
        inputs=inputs,
        source=source,
        situation_hash=fields.get("situation_hash"),
        recommendations=fields.get("recommendations", []),
    )


def _coached(candidate: CoachingCandidate, update: dict[str, Any]) -> CoachingCandidate:
    """The candidate as the next sync sees it after `update` was written."""
    return CoachingCandidate(
        row_id=candidate.row_id,
        inputs=candidate.inputs,
        source=update["coaching_source"],
        situation_hash=update["coaching_input_hash"],
        recommendations=update["coaching_recommendations"],
    )


def _llm_settings(server: OpenAIServer) -> LLMSettings:
    return LLMSettings(
        model="gpt-test", api_key="test-key", base_url=server.base_url, timeout_seconds=5, max_attempts=2
    )


def _answer(title: str) -> str:
    return json.dumps(
        {"recommendations": [{"category": "activity", "priority": "high", "title": title, "detail": "Make calls."}]}
    )


def test_the_llm_coach_is_used_within_its_budget_and_upgrades_offline_coaching_later() -> None:
    with OpenAIServer(responder=lambda _: Reply.chat(_answer("From the model"))) as server:
        coach = LLMCoach(_llm_settings(server))
        candidates = [_candidate(i) for i in range(LLM_REPS_PER_SYNC + 3)]
        updates = plan_coaching(candidates, coach)
        sources = [u["coaching_source"] for u in updates]
        assert sources.count(CoachingSource.LLM) == LLM_REPS_PER_SYNC
        assert sources.count(CoachingSource.OFFLINE) == 3
        assert updates[0]["coaching_recommendations"][0]["title"] == "From the model"
        assert len(server.requests(CHAT_PATH)) == LLM_REPS_PER_SYNC
        sent = server.requests(CHAT_PATH)[0].json
        assert sent["model"] == "gpt-test" and "percentile" in sent["messages"][1]["content"]

        coached = [_coached(c, u) for c, u in zip(candidates, updates, strict=True)]
        # Next sync: unchanged LLM rows are skipped, the three offline ones are upgraded.
        again = plan_coaching(coached, LLMCoach(_llm_settings(server)))
        assert [u["id"] for u in again] == [c.row_id for c in coached[-3:]]
        assert {u["coaching_source"] for u in again} == {CoachingSource.LLM}
        # The offline coach never rewrites coaching whose situation and text did not change.
        assert plan_coaching(coached, OfflineCoach()) == []
        offline = [_coached(c, u) for c, u in zip(coached[-3:], updates[-3:], strict=True)]
        assert plan_coaching(offline, OfflineCoach()) == []


def test_llm_advice_stands_while_the_situation_holds_and_is_asked_again_when_it_changes() -> None:
    with OpenAIServer(responder=lambda _: Reply.chat(_answer("From the model"))) as server:
        (first,) = plan_coaching([_candidate(1, activity=0.1)], LLMCoach(_llm_settings(server)))
        stored = _coached(_candidate(1, activity=0.1), first)
        # The team moved a little: other figures, same weak spot. The model is not asked again.
        nudged = CoachingCandidate(
            row_id=1,
            inputs=_inputs({**MIDDLE, "activity": 0.2, "pipeline": 0.6}),
            source=stored.source,
            situation_hash=stored.situation_hash,
            recommendations=stored.recommendations,
        )
        assert plan_coaching([nudged], LLMCoach(_llm_settings(server))) == []
        # The rep climbed out of the bottom quartile: a new situation, a new answer.
        climbed = CoachingCandidate(
            row_id=1,
            inputs=_inputs({**MIDDLE, "activity": 0.9}),
            source=stored.source,
            situation_hash=stored.situation_hash,
            recommendations=stored.recommendations,
        )
        (update,) = plan_coaching([climbed], LLMCoach(_llm_settings(server)))
        assert update["coaching_source"] is CoachingSource.LLM
        assert update["coaching_input_hash"] != stored.situation_hash
        assert len(server.requests(CHAT_PATH)) == 2


def test_the_situation_is_which_rules_fire_not_the_figures_they_quote() -> None:
    low = offline_recommendations(_inputs({**MIDDLE, "activity": 0.1}))
    lower = offline_recommendations(_inputs({**MIDDLE, "activity": 0.0}))
    assert low[0].detail != lower[0].detail
    assert situation_digest(low) == situation_digest(lower)
    assert situation_digest(low) != situation_digest(offline_recommendations(_inputs(MIDDLE)))


def test_an_unavailable_llm_falls_back_to_the_rules_and_stops_asking_for_that_sync() -> None:
    with OpenAIServer(responder=lambda _: Reply.error(503, "overloaded")) as server:
        coach = LLMCoach(_llm_settings(server))
        updates = plan_coaching([_candidate(1), _candidate(2), _candidate(3)], coach)
    assert {u["coaching_source"] for u in updates} == {CoachingSource.OFFLINE}
    assert updates[0]["coaching_recommendations"][0]["title"] == "Raise outreach volume"
    # Two attempts for the first rep, then the coach knows the provider is down.
    assert len(server.requests(CHAT_PATH)) == 2 and coach.unavailable


def test_unusable_model_output_falls_back_for_that_rep_only() -> None:
    with OpenAIServer() as server:
        server.script(CHAT_PATH, Reply.chat('{"recommendations": "none"}'), Reply.chat(_answer("Second rep")))
        coach = LLMCoach(_llm_settings(server))
        first = coach.recommend(_candidate(1).inputs)
        second = coach.recommend(_candidate(2).inputs)
    assert first[1] is CoachingSource.OFFLINE and first[0][0].title == "Raise outreach volume"
    assert second[1] is CoachingSource.LLM and second[0][0].title == "Second rep"


def test_default_coach_follows_the_provider_setting(monkeypatch) -> None:
    assert isinstance(coaching.default_coach(), OfflineCoach)

    class FakeSettings:
        llm_provider = "openai"
        openai_api_key = "k"
        openai_model = "gpt-test"
        openai_base_url = "http://127.0.0.1:9/v1"
        llm_timeout_seconds = 3.0
        llm_max_attempts = 4

    monkeypatch.setattr(coaching, "get_settings", lambda: FakeSettings())
    coach = coaching.default_coach()
    assert isinstance(coach, LLMCoach) and coach.settings.max_attempts == 2 and coach.settings.timeout_seconds == 3.0


NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)


@freeze_time(NOW)
def test_a_sync_stores_llm_coaching_for_today(make_workspace) -> None:
    workspace_id = make_workspace()
    reps = make_reps(workspace_id, 2)
    ingest(workspace_id, [item("call", rep, NOW - timedelta(hours=1)) for rep in reps])
    with OpenAIServer(responder=lambda _: Reply.chat(_answer("Model advice"))) as server, session_scope() as s:
        result = sync_salesboard(s, workspace_id, coach=LLMCoach(_llm_settings(server)))
    assert result["coached"] == 2 and result["coached_by_llm"] == 2
    with session_scope() as s:
        rows = list(s.scalars(select(AISalesboardMetric).where(AISalesboardMetric.workspace_id == workspace_id)))
        assert {r.metric_date for r in rows} == {date(2026, 3, 10)}
        assert {r.coaching_source for r in rows} == {CoachingSource.LLM}
        assert rows[0].coaching_recommendations[0]["title"] == "Model advice"
