"""AI Salesboard sync against the real database: counts, local days, pipeline, score, insights, cache, scope."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select, update

from models.sales import AISalesboardMetric, CoachingSource
from tasks.sales.salesboard import sync_salesboard
from tasks.sales.scoring import SCORE_WEIGHTS
from tests.sales.factory import ingest, item, make_reps
from workers.db import session_scope
from workers.errors import BadInput

NOW = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)


def _sync(workspace_id: int, **kwargs: Any) -> dict[str, Any]:
    with session_scope() as s:
        return sync_salesboard(s, workspace_id, **kwargs)


def _rows(workspace_id: int, day: date | None = None) -> dict[tuple[int, date], AISalesboardMetric]:
    with session_scope() as s:
        query = select(AISalesboardMetric).where(AISalesboardMetric.workspace_id == workspace_id)
        if day is not None:
            query = query.where(AISalesboardMetric.metric_date == day)
        rows = list(s.scalars(query))
        s.expunge_all()
    return {(r.rep_id, r.metric_date): r for r in rows}


@freeze_time(NOW)
def test_counts_are_cut_at_the_workspace_midnight_and_pipeline_follows_deals(make_workspace) -> None:
    workspace_id = make_workspace(timezone="America/New_York")
    (rep,) = make_reps(workspace_id, 1)
    day = lambda d, h: datetime(2026, 3, d, h, tzinfo=UTC)  # noqa: E731
    ingest(
        workspace_id,
        [
            item("call", rep, day(9, 15)),
            # 03:00 UTC on the 10th is 23:00 on the 9th in New York.
            item("call", rep, day(10, 3)),
            item("email_sent", rep, day(10, 14)),
            item("email_sent", rep, day(10, 15)),
            item("email_opened", rep, day(10, 16)),
            item("deal_stage_changed", rep, day(5, 15), "D1", stage="qualified", amount_cents=10_000),
            item("deal_stage_changed", rep, day(8, 15), "D1", stage="proposal", amount_cents=25_000),
            item("deal_stage_changed", rep, day(9, 15), "D2", stage="demo", amount_cents=5_000),
            item("deal_won", rep, day(10, 16), "D1"),
            # A deal opened and lost within the day: no pipeline left, one loss.
            item("deal_stage_changed", rep, day(10, 14), "D3", stage="prospecting", amount_cents=900),
            item("deal_lost", rep, day(10, 15), "D3"),
        ],
    )
    result = _sync(workspace_id)
    assert result["cached"] is False and result["from_day"] == "2026-03-05"
    rows = _rows(workspace_id)
    assert {d for _, d in rows} == {date(2026, 3, d) for d in range(5, 11)}
    ninth, tenth = rows[(rep, date(2026, 3, 9))], rows[(rep, date(2026, 3, 10))]
    assert (ninth.calls, tenth.calls, tenth.emails_sent, tenth.emails_opened) == (2, 0, 2, 1)
    assert [rows[(rep, date(2026, 3, d))].pipeline_value_cents for d in range(5, 11)] == [
        10_000,
        10_000,
        10_000,
        25_000,
        30_000,
        5_000,
    ]
    assert (tenth.deals_won, tenth.won_value_cents) == (1, 25_000)
    assert tenth.funnel[0] == {"stage": "emails_sent", "count": 2}
    assert tenth.conversion_rates["sent_to_opened"] == 0.5
    assert (tenth.deals_lost, tenth.conversion_rates["win_rate"]) == (1, 0.5)
    # A team of one sits in the middle of its own distribution.
    assert tenth.performance_score == 50.0
    assert tenth.insights["team_size"] == 1


def _mid_rank(values: list[float], value: float) -> float:
    if len(values) == 1:
        return 0.5
    below = sum(v < value for v in values)
    ties = sum(v == value for v in values) - 1
    return (below + ties / 2) / (len(values) - 1)


@freeze_time(NOW)
def test_score_is_the_weighted_team_percentile_and_names_strengths(make_workspace) -> None:
    workspace_id = make_workspace()
    reps = make_reps(workspace_id, 4)
    at = NOW - timedelta(hours=3)
    items = []
    # Rep i makes 3*i calls and books i meetings; rep 3 also has open pipeline, rep 0 nothing but one call.
    for i, rep in enumerate(reps):
        items += [item("call", rep, at) for _ in range(3 * i + 1)]
        items += [item("meeting_booked", rep, at) for _ in range(i)]
    items.append(item("deal_stage_changed", reps[3], at, "big", stage="proposal", amount_cents=900_000))
    ingest(workspace_id, items)
    _sync(workspace_id)
    rows = _rows(workspace_id, NOW.date())
    assert len(rows) == 4
    components = {
        "activity": [3.0 * i + 1 for i in range(4)],
        "reply_rate": [0.0] * 4,
        "meetings": [float(i) for i in range(4)],
        "pipeline": [0.0, 0.0, 0.0, 900_000.0],
        "wins": [0.0] * 4,
    }
    for i, rep in enumerate(reps):
        expected = 100 * sum(
            weight * _mid_rank(components[name], components[name][i]) for name, weight in SCORE_WEIGHTS.items()
        )
        row = rows[(rep, NOW.date())]
        assert row.performance_score == pytest.approx(round(expected, 1))
        assert row.score_components["activity"]["value"] == components["activity"][i]
        assert row.score_components["meetings"]["team_median"] == 1.5
    best, worst = rows[(reps[3], NOW.date())], rows[(reps[0], NOW.date())]
    assert best.performance_score > rows[(reps[2], NOW.date())].performance_score > worst.performance_score
    assert set(best.insights["strengths"]) == {"activity", "meetings", "pipeline"}
    assert best.insights["opportunities"] == []
    assert set(worst.insights["opportunities"]) == {"activity", "meetings"}
    # Coaching came from the offline rules (no LLM configured in tests) and addresses the weak spots.
    assert worst.coaching_source is CoachingSource.OFFLINE
    assert {r["category"] for r in worst.coaching_recommendations} >= {"activity", "meetings"}
    assert best.coaching_recommendations[0]["category"] == "recognition"


@freeze_time(NOW)
def test_trends_compare_the_last_week_with_the_prior_week_and_month(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    items = [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(7) for _ in range(1)]
    items += [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(7, 14) for _ in range(2)]
    items += [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(14, 37)]
    ingest(workspace_id, items)
    _sync(workspace_id)
    calls = _rows(workspace_id, NOW.date())[(rep, NOW.date())].insights["trends"]["calls"]
    assert (calls["last_7d"], calls["prior_7d"]) == (7, 14)
    assert calls["change_vs_prior_7d"] == -0.5
    # The 30 days before the last week (days 7-36) hold 14 + 23 = 37 calls: 37 * 7 / 30 = 8.63 a week.
    assert calls["prior_30d_weekly_avg"] == 8.63
    assert calls["change_vs_prior_30d"] == round((7 - 37 * 7 / 30) / (37 * 7 / 30), 3)


def test_a_sync_within_five_minutes_returns_the_stored_metrics_unless_forced(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    with freeze_time(NOW) as clock:
        ingest(workspace_id, [item("call", rep, NOW - timedelta(hours=1))])
        first = _sync(workspace_id)
        assert first["cached"] is False and first["metrics"][0]["calls"] == 1

        clock.tick(timedelta(minutes=1))
        ingest(workspace_id, [item("call", rep, NOW - timedelta(minutes=30))])
        clock.tick(timedelta(minutes=1))
        cached = _sync(workspace_id)
        assert cached["cached"] is True and cached["metrics"][0]["calls"] == 1
        assert cached["synced_at"] == first["synced_at"]

        forced = _sync(workspace_id, force=True)
        assert forced["cached"] is False and forced["metrics"][0]["calls"] == 2

        clock.tick(timedelta(minutes=4, seconds=59))
        assert _sync(workspace_id)["cached"] is True
        clock.tick(timedelta(seconds=1))
        assert _sync(workspace_id)["cached"] is False


def test_late_activity_recomputes_its_day_and_everything_after(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    with freeze_time(NOW) as clock:
        ingest(workspace_id, [item("call", rep, NOW - timedelta(hours=1))])
        assert _sync(workspace_id)["from_day"] == NOW.date().isoformat()
        clock.tick(timedelta(minutes=10))
        # A deal moved three days ago, reported only now: that day's and every later day's pipeline change.
        three_days_ago = NOW - timedelta(days=3)
        ingest(
            workspace_id,
            [item("deal_stage_changed", rep, three_days_ago, "D", stage="demo", amount_cents=7_000)],
        )
        result = _sync(workspace_id)
    assert result["from_day"] == three_days_ago.date().isoformat()
    rows = _rows(workspace_id)
    assert [rows[(rep, (NOW - timedelta(days=d)).date())].pipeline_value_cents for d in (3, 2, 1, 0)] == [7_000] * 4


@freeze_time(NOW)
def test_a_rep_sync_writes_only_that_rep_but_scores_against_the_team(make_workspace) -> None:
    workspace_id = make_workspace()
    strong, weak = make_reps(workspace_id, 2)
    at = NOW - timedelta(hours=2)
    ingest(workspace_id, [item("call", strong, at) for _ in range(9)] + [item("call", weak, at)])
    result = _sync(workspace_id, rep_id=weak)
    assert [m["rep_id"] for m in result["metrics"]] == [weak]
    rows = _rows(workspace_id)
    assert set(rows) == {(weak, NOW.date())}
    assert rows[(weak, NOW.date())].insights["team_size"] == 2
    assert rows[(weak, NOW.date())].performance_score < 50
    # The team sync is not covered by a rep's sync; a rep sync right after a team sync is.
    assert _sync(workspace_id)["cached"] is False
    assert _sync(workspace_id, rep_id=strong)["cached"] is True
    assert len(_rows(workspace_id)) == 2


@freeze_time(NOW)
def test_unchanged_inputs_keep_their_coaching_and_history_keeps_its_own(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    ingest(workspace_id, [item("call", rep, NOW - timedelta(days=1)), item("call", rep, NOW - timedelta(hours=1))])
    _sync(workspace_id)
    with session_scope() as s:
        s.execute(
            update(AISalesboardMetric)
            .where(AISalesboardMetric.workspace_id == workspace_id)
            .values(coaching_recommendations=[{"marker": True}])
        )
    result = _sync(workspace_id, force=True)
    assert result["coached"] == 0
    rows = _rows(workspace_id)
    assert rows[(rep, NOW.date())].coaching_recommendations == [{"marker": True}]
    ingest(workspace_id, [item("meeting_booked", rep, NOW - timedelta(minutes=5))])
    assert _sync(workspace_id, force=True)["coached"] == 1
    rows = _rows(workspace_id)
    assert rows[(rep, NOW.date())].coaching_recommendations != [{"marker": True}]
    # Yesterday's row is recomputed for metrics but its coaching is what it was when it was today.
    assert rows[(rep, (NOW - timedelta(days=1)).date())].coaching_recommendations == [{"marker": True}]


def test_unknown_workspace_or_foreign_rep_is_bad_input(make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (foreign,) = make_reps(other, 1)
    with pytest.raises(BadInput, match="not in workspace"):
        _sync(workspace_id, rep_id=foreign)
    with pytest.raises(BadInput, match="does not exist"):
        _sync(2**40)


@freeze_time(NOW)
def test_an_empty_workspace_syncs_to_an_empty_board(make_workspace) -> None:
    workspace_id = make_workspace()
    result = _sync(workspace_id)
    assert result["cached"] is False and result["rows_written"] == 0 and result["metrics"] == []
