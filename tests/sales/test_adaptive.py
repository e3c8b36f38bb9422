"""Adaptive outbound learning on synthetic data with planted effects, and the config it honours."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import select, update

from models.sales import AdaptiveAIConfig
from tasks.sales.adaptive import learn_adaptive_ai
from tests.sales.factory import ingest, item, make_reps
from workers.db import session_scope

NOW = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
INDUSTRIES = ("fintech", "healthcare", "retail", "logistics", "education", "media")
REGIONS = ("na", "emea", "apac")
SIZES = ("11-50", "51-200", "201-1000")
SENIORITIES = ("manager", "director", "vp")


def _planted_outbound(rep: int, leads_per_industry: int, seed: int) -> list[dict[str, Any]]:
    """Emails to leads whose reply chance is 8 %, doubled for fintech and for template t-strong."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for industry in INDUSTRIES:
        for n in range(leads_per_industry):
            lead = f"{industry}-{seed}-{n}"
            template = rng.choice(("t-plain", "t-strong", "t-short"))
            sent_at = NOW - timedelta(days=rng.uniform(2, 80))
            attributes = {
                "industry": industry,
                "region": rng.choice(REGIONS),
                "company_size": rng.choice(SIZES),
                "title_seniority": rng.choice(SENIORITIES),
            }
            items.append(item("email_sent", rep, sent_at, lead, template=template, **attributes))
            chance = 0.08 * (2.0 if industry == "fintech" else 1.0) * (2.0 if template == "t-strong" else 1.0)
            if rng.random() < chance:
                items.append(item("email_replied", rep, sent_at + timedelta(hours=5), lead, template=template))
                if rng.random() < 0.5:
                    items.append(item("meeting_booked", rep, sent_at + timedelta(days=1), lead))
    return items


def _learn(workspace_id: int) -> dict[str, Any]:
    with session_scope() as s:
        return learn_adaptive_ai(s, workspace_id)


def _config(workspace_id: int) -> AdaptiveAIConfig:
    with session_scope() as s:
        config = s.scalars(select(AdaptiveAIConfig).where(AdaptiveAIConfig.workspace_id == workspace_id)).one()
        s.expunge(config)
    return config


@freeze_time(NOW)
def test_the_planted_industry_comes_first_and_the_strong_template_is_most_likely_best(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    ingest(workspace_id, _planted_outbound(rep, leads_per_industry=250, seed=7))
    result = _learn(workspace_id)
    assert result["status"] == "learned" and result["leads"] == 250 * len(INDUSTRIES)

    config = _config(workspace_id)
    patterns = config.learned_patterns
    first = patterns["icp"][0]
    assert (first["attribute"], first["value"]) == ("industry", "fintech")
    assert first["above_baseline"]["reply"] is True
    assert first["reply_rate_lower"] > patterns["baseline"]["reply_rate"]
    assert 1.4 < first["reply_lift"] < 2.6
    assert patterns["top_icp"][0] == first
    # Region, size and seniority were assigned at random: none of them is ranked above the planted value.
    assert all(p["reply_lower_lift"] < first["reply_lower_lift"] for p in patterns["icp"][1:])
    assert result["top_icp"][0] == {"attribute": "industry", "value": "fintech", "lift": first["reply_lift"]}

    templates = config.best_templates
    assert templates[0]["template_id"] == "t-strong"
    assert templates[0]["prob_best"] > 0.8
    assert abs(sum(t["prob_best"] for t in templates) - 1.0) < 1e-3
    assert (
        templates[0]["credible_interval_95"][0]
        < templates[0]["posterior_mean"]
        < templates[0]["credible_interval_95"][1]
    )
    assert config.samples_analyzed == 1500 and config.last_learned_at == NOW
    assert abs(config.baseline_reply_rate - patterns["baseline"]["reply_rate"]) < 1e-4


@freeze_time(NOW)
def test_values_and_templates_under_the_minimum_sample_are_reported_not_ranked(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    ingest(workspace_id, _planted_outbound(rep, leads_per_industry=40, seed=3))
    with session_scope() as s:
        s.add(AdaptiveAIConfig(workspace_id=workspace_id, min_sample_size=100))
    _learn(workspace_id)
    patterns = _config(workspace_id).learned_patterns
    assert patterns["min_sample_size"] == 100
    ranked = {(p["attribute"], p["value"]) for p in patterns["icp"]}
    thin = {(p["attribute"], p["value"]) for p in patterns["insufficient_sample"]}
    assert ("industry", "fintech") in thin and not any(a == "industry" for a, _ in ranked)
    # Regions pool 240 leads over three values: about 80 each, under 100 too; nothing is compared.
    assert all(p["leads"] >= 100 for p in patterns["icp"])
    assert _config(workspace_id).best_templates == []
    assert {t["template_id"] for t in patterns["templates_insufficient_sample"]} == {"t-plain", "t-strong", "t-short"}


@freeze_time(NOW)
def test_a_disabled_config_learns_nothing(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    ingest(workspace_id, _planted_outbound(rep, leads_per_industry=20, seed=1))
    with session_scope() as s:
        s.add(AdaptiveAIConfig(workspace_id=workspace_id, enabled=False))
    assert _learn(workspace_id) == {"workspace_id": workspace_id, "status": "disabled"}
    config = _config(workspace_id)
    assert config.learned_patterns == {} and config.last_learned_at is None


def _cohort(rep: int, start: datetime, leads: int, replies: int, tag: str) -> list[dict[str, Any]]:
    items = []
    for n in range(leads):
        sent_at = start + timedelta(hours=n)
        lead = f"{tag}-{n}"
        items.append(item("email_sent", rep, sent_at, lead, template="t1", industry="saas"))
        if n < replies:
            items.append(item("email_replied", rep, sent_at + timedelta(hours=2), lead, template="t1"))
    return items


def test_improvement_is_measured_against_the_night_learning_began(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    first_night = NOW
    second_night = NOW + timedelta(days=40)
    with freeze_time(first_night):
        ingest(workspace_id, _cohort(rep, first_night - timedelta(days=20), leads=100, replies=10, tag="before"))
        first = _learn(workspace_id)
    config = _config(workspace_id)
    assert config.initial_success_rate == 0.1 and config.learning_started_at == first_night
    assert first["improvement_points"] == 0.0
    with freeze_time(second_night):
        ingest(workspace_id, _cohort(rep, second_night - timedelta(days=20), leads=100, replies=25, tag="after"))
        second = _learn(workspace_id)
        # A second run the same night replaces that night's history entry instead of adding one.
        _learn(workspace_id)
    config = _config(workspace_id)
    assert config.initial_success_rate == 0.1 and config.current_success_rate == 0.25
    assert second["improvement_points"] == 15.0
    assert config.improvement["relative_change"] == 1.5
    assert config.improvement["since"] == first_night.isoformat()
    assert [h["date"] for h in config.improvement["history"]] == [
        first_night.date().isoformat(),
        second_night.date().isoformat(),
    ]


@freeze_time(NOW)
def test_replies_count_only_after_the_send_and_untagged_replies_count_for_the_template(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    sent = NOW - timedelta(days=5)
    ingest(
        workspace_id,
        [
            item("email_sent", rep, sent, "a", template="t1"),
            item("email_replied", rep, sent + timedelta(hours=1), "a"),
            item("email_sent", rep, sent, "b", template="t1"),
            # A reply before the first send in the window belongs to an older conversation.
            item("email_replied", rep, sent - timedelta(hours=1), "b", template="t1"),
            item("email_sent", rep, sent, "c", template="t1"),
            item("meeting_booked", rep, sent + timedelta(days=1), "c"),
        ],
    )
    with session_scope() as s:
        s.add(AdaptiveAIConfig(workspace_id=workspace_id, min_sample_size=1))
    _learn(workspace_id)
    config = _config(workspace_id)
    assert config.learned_patterns["baseline"] == {"leads": 3, "reply_rate": 0.3333, "meeting_rate": 0.3333}
    (template,) = config.best_templates
    assert (template["sends"], template["replies"], template["meetings"], template["prob_best"]) == (3, 1, 1, 1.0)


def test_config_changes_take_effect_on_the_next_run(make_workspace) -> None:
    workspace_id = make_workspace()
    (rep,) = make_reps(workspace_id, 1)
    with freeze_time(NOW):
        ingest(workspace_id, _planted_outbound(rep, leads_per_industry=30, seed=11))
        _learn(workspace_id)
        with session_scope() as s:
            s.execute(
                update(AdaptiveAIConfig).where(AdaptiveAIConfig.workspace_id == workspace_id).values(lookback_days=1)
            )
        result = _learn(workspace_id)
    # Every send is at least two days old: a one-day window has nothing to learn from.
    assert result["leads"] == 0 and _config(workspace_id).learned_patterns["icp"] == []
