"""AI Salesboard sync against the real database: counts, local days, pipeline, score, insights, cache, scope."""

from __future__ import annotations

import random
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import delete, select, text, update

from models.core import Workspace
from models.sales import AISalesboardMetric, CoachingSource, SalesboardRollup, SalesboardSync, SalesRepDay
from tasks.sales.salesboard import BOARD_FIGURES, board_view, sync_salesboard
from tasks.sales.scoring import SCORE_WEIGHTS, component_values
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


def _figures(workspace_id: int, since: date) -> dict[tuple[int, date], tuple[Any, ...]]:
    return {
        key: tuple(getattr(row, c) for c in BOARD_FIGURES)
        for key, row in _rows(workspace_id).items()
        if key[1] >= since
    }


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
    # The first sync rolls up and computes the board's whole 90 days; the rep is on it from the first deal.
    assert result["cached"] is False and result["from_day"] == "2025-12-11"
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
    assert (tenth.deals_won, tenth.won_value_cents, tenth.won_value_30d_cents) == (1, 25_000, 25_000)
    view = board_view(tenth)
    assert view["funnel"][0] == {"stage": "emails_sent", "count": 2}
    assert view["conversion_rates"]["sent_to_opened"] == 0.5
    assert (tenth.deals_lost, view["conversion_rates"]["win_rate"]) == (1, 0.5)
    assert view["conversion_rates"]["held_to_won"] is None
    # A team of one sits in the middle of its own distribution.
    assert tenth.performance_score == 50.0
    assert tenth.team_size == 1 and view["insights"]["team_size"] == 1


@freeze_time(datetime(2026, 3, 9, 12, 0, tzinfo=UTC))
def test_days_are_cut_at_local_midnight_across_a_daylight_saving_change(make_workspace) -> None:
    # New York springs forward at 02:00 on 8 March 2026: that local day has 23 hours.
    workspace_id = make_workspace(timezone="America/New_York")
    (rep,) = make_reps(workspace_id, 1)
    ingest(
        workspace_id,
        [
            item("call", rep, datetime(2026, 3, 8, 4, 59, tzinfo=UTC)),  # 23:59 EST on the 7th
            item("call", rep, datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),  # 00:00 EST on the 8th
            item("call", rep, datetime(2026, 3, 9, 3, 59, tzinfo=UTC)),  # 23:59 EDT on the 8th
            item("call", rep, datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),  # 00:00 EDT on the 9th
        ],
    )
    _sync(workspace_id)
    rows = _rows(workspace_id)
    assert {d: r.calls for (_, d), r in rows.items()} == {date(2026, 3, 7): 1, date(2026, 3, 8): 2, date(2026, 3, 9): 1}


def test_a_timezone_change_cuts_every_day_again(make_workspace) -> None:
    workspace_id = make_workspace(timezone="UTC")
    (rep,) = make_reps(workspace_id, 1)
    with freeze_time(NOW) as clock:
        # 22:00 UTC on the 9th is 07:00 on the 10th in Tokyo.
        ingest(workspace_id, [item("call", rep, datetime(2026, 3, 9, 22, tzinfo=UTC))])
        _sync(workspace_id)
        assert _rows(workspace_id)[(rep, date(2026, 3, 9))].calls == 1
        with session_scope() as s:
            s.execute(update(Workspace).where(Workspace.id == workspace_id).values(timezone="Asia/Tokyo"))
        clock.tick(timedelta(minutes=6))
        result = _sync(workspace_id)
    assert result["rollup_rebuilt"] is True
    # Tokyo's today is the 11th at 03:00 local: the call is on the 10th, and the 9th has no call any more.
    rows = _rows(workspace_id)
    assert rows[(rep, date(2026, 3, 10))].calls == 1
    # The rep's first activity is now on the 10th: the 9th's row (cut in UTC) is gone.
    assert (rep, date(2026, 3, 9)) not in rows


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
        view = board_view(row)
        assert view["score_components"]["activity"]["value"] == components["activity"][i]
        assert view["score_components"]["meetings"]["team_median"] == 1.5
        assert row.activity_percentile == pytest.approx(_mid_rank(components["activity"], components["activity"][i]))
    best, worst = rows[(reps[3], NOW.date())], rows[(reps[0], NOW.date())]
    assert best.performance_score > rows[(reps[2], NOW.date())].performance_score > worst.performance_score
    assert set(best.strengths) == {"activity", "meetings", "pipeline"}
    assert best.opportunities == []
    assert set(worst.opportunities) == {"activity", "meetings"}
    # Coaching came from the offline rules (no LLM configured in tests) and addresses the weak spots.
    assert worst.coaching_source is CoachingSource.OFFLINE
    assert {r["category"] for r in worst.coaching_recommendations} >= {"activity", "meetings"}
    assert best.coaching_recommendations[0]["category"] == "recognition"


@freeze_time(NOW)
def test_the_stored_percentiles_rank_the_components_python_reads_back(make_workspace) -> None:
    workspace_id = make_workspace()
    reps = make_reps(workspace_id, 6)
    rng = random.Random(11)
    kinds = ("call", "email_sent", "email_replied", "meeting_booked", "meeting_held")
    items = [
        item(rng.choice(kinds), rep, NOW - timedelta(days=rng.randint(0, 25), hours=1))
        for rep in reps
        for _ in range(rng.randint(3, 30))
    ]
    items += [
        item("deal_stage_changed", rep, NOW - timedelta(days=3), f"D{i}", stage="demo", amount_cents=1_000 * i)
        for i, rep in enumerate(reps[:4])
    ]
    items += [item("deal_won", reps[1], NOW - timedelta(days=2), "D1"), item("deal_won", reps[2], NOW, "D2")]
    ingest(workspace_id, items)
    _sync(workspace_id)
    rows = list(_rows(workspace_id, NOW.date()).values())
    assert len(rows) == 6
    for name in SCORE_WEIGHTS:
        values = [component_values(row)[name] for row in rows]
        assert len(set(values)) > 1, name
        for row, value in zip(rows, values, strict=True):
            assert getattr(row, f"{name}_percentile") == pytest.approx(_mid_rank(values, value)), name


@freeze_time(NOW)
def test_trends_compare_the_last_week_with_the_prior_week_and_month(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    items = [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(7)]
    items += [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(7, 14) for _ in range(2)]
    # Days 14-36, then one call on day 37: just outside the 30 days before the last week.
    items += [item("call", rep, NOW - timedelta(days=d, hours=1)) for d in range(14, 38)]
    ingest(workspace_id, items)
    _sync(workspace_id)
    row = _rows(workspace_id, NOW.date())[(rep, NOW.date())]
    assert (row.calls_7d, row.calls_prior_7d, row.calls_prior_30d) == (7, 14, 37)
    calls = board_view(row)["insights"]["trends"]["calls"]
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
        # Nothing new: the rows are recomputed but none is rewritten.
        assert _sync(workspace_id, force=True)["rows_written"] == 0

        clock.tick(timedelta(minutes=4, seconds=59))
        assert _sync(workspace_id)["cached"] is True
        clock.tick(timedelta(seconds=1))
        assert _sync(workspace_id)["cached"] is False


def test_late_activity_recomputes_its_day_and_everything_after(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    with freeze_time(NOW) as clock:
        ingest(workspace_id, [item("call", rep, NOW - timedelta(hours=1))])
        _sync(workspace_id)
        clock.tick(timedelta(minutes=11))
        # Activity ingested up to 10 minutes before the last rollup is read again (it may have committed late).
        assert _sync(workspace_id)["rolled_up_from"] == NOW.date().isoformat()
        clock.tick(timedelta(minutes=11))
        steady = _sync(workspace_id)
        # The steady state: nothing new to roll up, only today's rows are recomputed.
        assert (steady["rolled_up_from"], steady["from_day"]) == (None, NOW.date().isoformat())
        clock.tick(timedelta(minutes=10))
        # A deal moved three days ago, reported only now: that day's and every later day's pipeline change.
        three_days_ago = NOW - timedelta(days=3)
        ingest(
            workspace_id,
            [item("deal_stage_changed", rep, three_days_ago, "D", stage="demo", amount_cents=7_000)],
        )
        result = _sync(workspace_id)
    assert result["rolled_up_from"] == result["from_day"] == three_days_ago.date().isoformat()
    rows = _rows(workspace_id)
    assert [rows[(rep, (NOW - timedelta(days=d)).date())].pipeline_value_cents for d in (3, 2, 1, 0)] == [7_000] * 4


def test_a_rep_who_leaves_the_board_loses_the_recomputed_days(make_workspace) -> None:
    workspace_id = make_workspace()
    seller, taker = make_reps(workspace_id, 2)
    with freeze_time(NOW) as clock:
        # The seller's only activity is a deal 45 days ago: on the board through its open pipeline alone.
        opened = NOW - timedelta(days=45)
        ingest(workspace_id, [item("deal_stage_changed", seller, opened, "D", stage="demo", amount_cents=5_000)])
        _sync(workspace_id)
        assert _rows(workspace_id, NOW.date())[(seller, NOW.date())].pipeline_value_cents == 5_000
        clock.tick(timedelta(minutes=6))
        # Reported late: the deal moved to another rep 20 days ago, and took its value along.
        moved = NOW - timedelta(days=20)
        ingest(workspace_id, [item("deal_stage_changed", taker, moved, "D", stage="proposal", amount_cents=6_000)])
        result = _sync(workspace_id)
    # With no pipeline left, the seller stays on the board only while the 45-day-old deal event is within
    # their 30 days: through day -16. Days -15 to today are removed.
    assert result["rows_removed"] == 16
    rows = _rows(workspace_id)
    assert max(d for r, d in rows if r == seller) == (NOW - timedelta(days=16)).date()
    assert rows[(seller, moved.date())].pipeline_value_cents == 0
    taker_today = rows[(taker, NOW.date())]
    assert (taker_today.pipeline_value_cents, taker_today.pipeline_7d_ago_cents) == (6_000, 6_000)
    assert taker_today.pipeline_30d_ago_cents == 0


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
    assert rows[(weak, NOW.date())].team_size == 2
    assert rows[(weak, NOW.date())].performance_score < 50
    # The team sync is not covered by a rep's sync; a rep sync right after a team sync is.
    assert _sync(workspace_id)["cached"] is False
    assert _sync(workspace_id, rep_id=strong)["cached"] is True
    assert len(_rows(workspace_id)) == 2


def test_only_reps_whose_coaching_situation_changed_are_coached_again(make_workspace) -> None:
    workspace_id = make_workspace()
    busy, quiet = make_reps(workspace_id, 2)
    with freeze_time(NOW) as clock:
        at = NOW - timedelta(hours=2)
        ingest(workspace_id, [item("call", busy, at) for _ in range(5)])
        ingest(workspace_id, [item("call", quiet, NOW - timedelta(days=1))])
        assert _sync(workspace_id)["coached"] == 2
        yesterday = (NOW - timedelta(days=1)).date()
        with session_scope() as s:
            s.execute(
                update(AISalesboardMetric)
                .where(AISalesboardMetric.workspace_id == workspace_id, AISalesboardMetric.metric_date == yesterday)
                .values(coaching_recommendations=[{"marker": "history"}])
            )
            # Pretend the busy rep's advice came from the LLM: it stands while the situation is the same.
            s.execute(
                update(AISalesboardMetric)
                .where(AISalesboardMetric.rep_id == busy, AISalesboardMetric.metric_date == NOW.date())
                .values(coaching_source=CoachingSource.LLM, coaching_recommendations=[{"marker": "llm"}])
            )
        # Nothing changed: nobody is coached again.
        assert _sync(workspace_id, force=True)["coached"] == 0
        # The quiet rep makes one call: their figures (quoted by the offline advice) change, their situation
        # does not, and neither does the busy rep's.
        clock.tick(timedelta(minutes=1))
        ingest(workspace_id, [item("call", quiet, NOW - timedelta(minutes=5))])
        assert _sync(workspace_id, force=True)["coached"] == 1
        rows = _rows(workspace_id, NOW.date())
        assert rows[(busy, NOW.date())].coaching_recommendations == [{"marker": "llm"}]
        assert "2 calls and emails" in rows[(quiet, NOW.date())].coaching_recommendations[0]["detail"]
        # The quiet rep overtakes: both situations change, and the LLM advice of the busy rep is replaced.
        clock.tick(timedelta(minutes=1))
        ingest(workspace_id, [item("call", quiet, NOW - timedelta(minutes=4)) for _ in range(9)])
        assert _sync(workspace_id, force=True)["coached"] == 2
    rows = _rows(workspace_id)
    assert rows[(busy, NOW.date())].coaching_source is CoachingSource.OFFLINE
    assert rows[(busy, NOW.date())].coaching_recommendations[0]["title"] == "Raise outreach volume"
    # Past days keep the coaching they had when they were today.
    assert rows[(quiet, yesterday)].coaching_recommendations == [{"marker": "history"}]


def _planted_history(reps: list[int], start: datetime, days: int, seed: int) -> list[dict[str, Any]]:
    """A few events per rep and day, and deals that move between reps, are won and lost."""
    rng = random.Random(seed)
    kinds = ("call", "email_sent", "email_opened", "email_replied", "meeting_booked", "meeting_held")
    items: list[dict[str, Any]] = []
    for day in range(days):
        for rep in reps:
            for _ in range(rng.randint(0, 4)):
                at = start + timedelta(days=day, minutes=rng.randint(0, 24 * 60 - 1))
                items.append(item(rng.choice(kinds), rep, at))
        if rng.random() < 0.6:
            at = start + timedelta(days=day, hours=rng.randint(0, 23))
            deal = f"D{rng.randint(0, 5)}"
            kind = rng.choice(("deal_stage_changed", "deal_stage_changed", "deal_won", "deal_lost"))
            if kind == "deal_stage_changed":
                items.append(
                    item(kind, rng.choice(reps), at, deal, stage="demo", amount_cents=rng.randint(1, 90) * 1_000)
                )
            else:
                items.append(item(kind, rng.choice(reps), at, deal))
    return items


def test_incremental_syncs_end_where_a_rebuild_from_scratch_ends(make_workspace) -> None:
    workspace_id = make_workspace(timezone="America/Los_Angeles")
    reps = make_reps(workspace_id, 3)
    start = NOW - timedelta(days=50)
    history = _planted_history(reps, start, 50, seed=5)
    early = [i for i in history if datetime.fromisoformat(i["occurred_at"]) < NOW - timedelta(days=2)]
    late = [i for i in history if i not in early]
    with freeze_time(NOW - timedelta(days=2)) as clock:
        ingest(workspace_id, early)
        _sync(workspace_id)
        clock.tick(timedelta(days=1, hours=2))
        # Yesterday's activity that had happened by now, a late batch from ten days ago, and a deal moving.
        ingest(workspace_id, [i for i in late if datetime.fromisoformat(i["occurred_at"]) <= NOW - timedelta(days=1)])
        ingest(workspace_id, _planted_history(reps, NOW - timedelta(days=10), 1, seed=6))
        ingest(
            workspace_id,
            [item("deal_stage_changed", reps[2], NOW - timedelta(days=8), "D1", stage="demo", amount_cents=1)],
        )
        _sync(workspace_id)
        clock.tick(timedelta(hours=22))
        # Activity from before anything was rolled up: its deal's open value folds into the rollup's first day.
        ancient = NOW - timedelta(days=200)
        ingest(
            workspace_id, [item("deal_stage_changed", reps[0], ancient, "D9", stage="qualified", amount_cents=4_400)]
        )
        ingest(workspace_id, [i for i in late if datetime.fromisoformat(i["occurred_at"]) > NOW - timedelta(days=1)])
        _sync(workspace_id)
        clock.tick(timedelta(minutes=7))
        ingest(workspace_id, [item("email_sent", rep, NOW - timedelta(minutes=m)) for m in (3, 9) for rep in reps])
        _sync(workspace_id)
        incremental = _figures(workspace_id, since=(NOW - timedelta(days=89)).date())
        with session_scope() as s:
            for model in (AISalesboardMetric, SalesRepDay, SalesboardRollup, SalesboardSync):
                s.execute(delete(model).where(model.workspace_id == workspace_id))
        _sync(workspace_id)
    rebuilt = _figures(workspace_id, since=(NOW - timedelta(days=89)).date())
    assert len(rebuilt) > 120 and incremental == rebuilt
    assert {row.pipeline_value_cents for (rep, _), row in _rows(workspace_id).items() if rep == reps[0]} != {0}


@freeze_time(NOW)
def test_a_board_never_counts_another_workspaces_reps_or_deals(make_workspace) -> None:
    workspace_id, other = make_workspace(), make_workspace()
    (rep,), (foreign,) = make_reps(workspace_id, 1), make_reps(other, 1)
    at = NOW - timedelta(hours=3)
    ingest(workspace_id, [item("deal_stage_changed", rep, at, "L1", stage="demo", amount_cents=10_000)])
    # The other workspace uses the same lead id for its own deal, and wins it.
    ingest(
        other,
        [
            item("deal_stage_changed", foreign, at, "L1", stage="demo", amount_cents=1),
            item("deal_won", foreign, at + timedelta(minutes=5), "L1"),
        ],
    )
    # A row that bypassed ingest's membership check: a foreign rep's activity filed under this workspace.
    with session_scope() as s:
        s.execute(
            text(
                "INSERT INTO sales_activities (workspace_id, activity_id, activity_type, rep_id, occurred_at, lead_id) "
                "VALUES (:ws, 'smuggled', 'call', :rep, :at, 'L2')"
            ),
            {"ws": workspace_id, "rep": foreign, "at": at},
        )
    _sync(workspace_id)
    _sync(other)
    rows = _rows(workspace_id)
    assert set(rows) == {(rep, NOW.date())}
    assert rows[(rep, NOW.date())].pipeline_value_cents == 10_000
    other_rows = _rows(other)
    assert other_rows[(foreign, NOW.date())].won_value_cents == 1 and other_rows[(foreign, NOW.date())].calls == 0


def test_concurrent_syncs_of_a_workspace_run_one_after_the_other(make_workspace) -> None:
    workspace_id = make_workspace()
    reps = make_reps(workspace_id, 3)
    ingest(workspace_id, [item("call", rep, datetime.now(UTC) - timedelta(hours=1)) for rep in reps])
    results: dict[str, dict[str, Any]] = {}
    errors: list[Exception] = []

    def run(name: str, **kwargs: Any) -> None:
        try:
            results[name] = _sync(workspace_id, **kwargs)
        except Exception as exc:  # handed to the test thread, which fails on it
            errors.append(exc)

    # Hold the workspace's sync lock the way a running sync does, start two more syncs, then sync and commit.
    with session_scope() as s:
        s.execute(text("SELECT pg_advisory_xact_lock(hashtext('sales.sync_salesboard'), :key)"), {"key": workspace_id})
        waiting = [
            threading.Thread(target=run, args=("plain",)),
            threading.Thread(target=run, args=("forced",), kwargs={"force": True}),
        ]
        for thread in waiting:
            thread.start()
        holder = sync_salesboard(s, workspace_id)
        assert all(thread.is_alive() for thread in waiting)
    for thread in waiting:
        thread.join(timeout=60)
    assert not errors, errors
    assert holder["cached"] is False and holder["rows_written"] == len(_rows(workspace_id)) >= 3
    # Each waiter saw the holder's commit: the plain one found the cache fresh, the forced one changed nothing.
    assert results["plain"]["cached"] is True and len(results["plain"]["metrics"]) == 3
    assert results["forced"]["cached"] is False and results["forced"]["rows_written"] == 0
    assert len(_rows(workspace_id)) == 3


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
