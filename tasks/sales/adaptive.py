"""Adaptive outbound AI: learn which ICP attribute values and which templates win, from email outcomes.

Units (see README, "Sales"):
* ICP: each lead emailed in the lookback window, once. It *replied* if an email reply from it arrived at or
  after its first send in the window; it *booked* if a meeting with it was booked at or after that send. Its
  attributes are those on its latest send. For every attribute value with at least `min_sample_size` leads:
  reply and meeting rates, their 95 % Wilson lower bounds and the lift of the bound over the workspace
  baseline. A value is a learned pattern when its lower bound beats the baseline, ranked by that lift.
* Templates: each (lead, template) first send. Replies count when they name the template or name none.
  Beta(1 + replies, 1 + non-replies) posteriors, and each template's probability of being the best by
  Monte-Carlo with a fixed seed; templates under the minimum sample are listed but not compared.
* Improvement: the reply rate of leads first emailed in the last 30 days, against the same figure on the
  night learning began.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.core import Workspace
from models.sales import AdaptiveAIConfig
from tasks.sales.stats import beta_prob_best, wilson_lower_bound
from workers.errors import BadInput

ATTRIBUTES = ("industry", "company_size", "title_seniority", "region")
# The success-rate window: long enough for a stable rate, short enough to show change within a quarter.
RECENT_DAYS = 30
# Improvement history kept on the config (one entry per learning night).
HISTORY_LENGTH = 120

_WINDOW_CTES = """
WITH window_acts AS (
    SELECT lead_id, activity_type, template_id, occurred_at,
           lead_industry, lead_company_size::text AS lead_company_size,
           lead_title_seniority::text AS lead_title_seniority, lead_region
    FROM sales_activities
    WHERE workspace_id = :workspace_id AND occurred_at >= :since AND occurred_at < :until
      AND activity_type IN ('email_sent', 'email_replied', 'meeting_booked')
),
outcomes AS (
    SELECT lead_id,
           max(occurred_at) FILTER (WHERE activity_type = 'email_replied') AS last_reply,
           max(occurred_at) FILTER (WHERE activity_type = 'meeting_booked') AS last_meeting
    FROM window_acts
    GROUP BY lead_id
)
"""

ICP_SQL = text(
    _WINDOW_CTES
    + """,
leads AS (
    SELECT DISTINCT ON (lead_id) lead_id, lead_industry, lead_company_size, lead_title_seniority, lead_region,
           min(occurred_at) OVER (PARTITION BY lead_id) AS first_sent
    FROM window_acts
    WHERE activity_type = 'email_sent'
    ORDER BY lead_id, occurred_at DESC
),
lead_outcomes AS (
    SELECT l.*,
           coalesce(o.last_reply >= l.first_sent, false) AS replied,
           coalesce(o.last_meeting >= l.first_sent, false) AS booked
    FROM leads l LEFT JOIN outcomes o USING (lead_id)
)
SELECT
    CASE WHEN GROUPING(lead_industry) = 0 THEN 'industry'
         WHEN GROUPING(lead_company_size) = 0 THEN 'company_size'
         WHEN GROUPING(lead_title_seniority) = 0 THEN 'title_seniority'
         WHEN GROUPING(lead_region) = 0 THEN 'region' END AS attribute,
    coalesce(lead_industry, lead_company_size, lead_title_seniority, lead_region) AS value,
    count(*) AS leads,
    count(*) FILTER (WHERE replied) AS replies,
    count(*) FILTER (WHERE booked) AS meetings,
    count(*) FILTER (WHERE first_sent >= :recent_since) AS recent_leads,
    count(*) FILTER (WHERE replied AND first_sent >= :recent_since) AS recent_replies,
    count(*) FILTER (WHERE booked AND first_sent >= :recent_since) AS recent_meetings
FROM lead_outcomes
GROUP BY GROUPING SETS ((lead_industry), (lead_company_size), (lead_title_seniority), (lead_region), ())
"""
)

TEMPLATE_SQL = text(
    _WINDOW_CTES
    + """,
sends AS (
    SELECT lead_id, template_id, min(occurred_at) AS sent_at
    FROM window_acts WHERE activity_type = 'email_sent'
    GROUP BY lead_id, template_id
),
replies AS (
    SELECT lead_id, template_id, max(occurred_at) AS last_reply
    FROM window_acts WHERE activity_type = 'email_replied'
    GROUP BY lead_id, template_id
)
SELECT s.template_id,
       count(*) AS sends,
       count(*) FILTER (WHERE r.last_reply >= s.sent_at OR untagged.last_reply >= s.sent_at) AS replies,
       count(*) FILTER (WHERE o.last_meeting >= s.sent_at) AS meetings
FROM sends s
LEFT JOIN replies r ON r.lead_id = s.lead_id AND r.template_id = s.template_id
LEFT JOIN replies untagged ON untagged.lead_id = s.lead_id AND untagged.template_id IS NULL
LEFT JOIN outcomes o ON o.lead_id = s.lead_id
GROUP BY s.template_id
ORDER BY s.template_id
"""
)


@dataclass(frozen=True)
class Rates:
    leads: int
    replies: int
    meetings: int

    @property
    def reply_rate(self) -> float:
        return self.replies / self.leads if self.leads else 0.0

    @property
    def meeting_rate(self) -> float:
        return self.meetings / self.leads if self.leads else 0.0


def _lift(value: float, baseline: float) -> float | None:
    return round(value / baseline, 4) if baseline > 0 else None


def rank_icp_values(
    groups: list[tuple[str, str, Rates]], baseline: Rates, min_sample: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Score every attribute value against the baseline; (ranked patterns, values under the minimum sample)."""
    scored: list[dict[str, Any]] = []
    insufficient: list[dict[str, Any]] = []
    for attribute, value, rates in groups:
        if rates.leads < min_sample:
            insufficient.append({"attribute": attribute, "value": value, "leads": rates.leads})
            continue
        reply_lower = wilson_lower_bound(rates.replies, rates.leads)
        meeting_lower = wilson_lower_bound(rates.meetings, rates.leads)
        scored.append(
            {
                "attribute": attribute,
                "value": value,
                "leads": rates.leads,
                "replies": rates.replies,
                "meetings": rates.meetings,
                "reply_rate": round(rates.reply_rate, 4),
                "reply_rate_lower": round(reply_lower, 4),
                "reply_lift": _lift(rates.reply_rate, baseline.reply_rate),
                "reply_lower_lift": _lift(reply_lower, baseline.reply_rate),
                "meeting_rate": round(rates.meeting_rate, 4),
                "meeting_rate_lower": round(meeting_lower, 4),
                "meeting_lift": _lift(rates.meeting_rate, baseline.meeting_rate),
                "meeting_lower_lift": _lift(meeting_lower, baseline.meeting_rate),
                "above_baseline": {
                    "reply": reply_lower > baseline.reply_rate,
                    "meeting": meeting_lower > baseline.meeting_rate,
                },
            }
        )
    # Confident winners first, by how far the *lower bound* clears the baseline: a big rate on few leads
    # does not outrank a solid one on many.
    scored.sort(
        key=lambda p: (
            -(p["above_baseline"]["reply"] or p["above_baseline"]["meeting"]),
            -(p["reply_lower_lift"] or 0.0),
            -(p["meeting_lower_lift"] or 0.0),
            p["attribute"],
            p["value"],
        )
    )
    for rank, pattern in enumerate(scored, start=1):
        pattern["rank"] = rank
    insufficient.sort(key=lambda g: (g["attribute"], g["value"]))
    return scored, insufficient


def compare_templates(
    rows: list[tuple[str, int, int, int]], min_sample: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Beta-posterior comparison of templates with enough sends; (ranked templates, too few sends)."""
    eligible = [r for r in rows if r[1] >= min_sample]
    insufficient = [{"template_id": t, "sends": n} for t, n, _, _ in rows if n < min_sample]
    by_reply = beta_prob_best([r[2] for r in eligible], [r[1] for r in eligible])
    by_meeting = beta_prob_best([r[3] for r in eligible], [r[1] for r in eligible])
    ranked = [
        {
            "template_id": template_id,
            "sends": sends,
            "replies": replies,
            "meetings": meetings,
            "reply_rate": round(replies / sends, 4),
            "posterior_mean": round(reply.mean, 4),
            "credible_interval_95": [round(reply.ci_low, 4), round(reply.ci_high, 4)],
            "prob_best": round(reply.prob_best, 4),
            "meeting_rate": round(meetings / sends, 4),
            "prob_best_meetings": round(meeting.prob_best, 4),
        }
        for (template_id, sends, replies, meetings), reply, meeting in zip(eligible, by_reply, by_meeting, strict=True)
    ]
    ranked.sort(key=lambda t: (-t["prob_best"], -t["posterior_mean"], t["template_id"]))
    for rank, template in enumerate(ranked, start=1):
        template["rank"] = rank
    return ranked, insufficient


def _improvement(config: AdaptiveAIConfig, recent: Rates, now: datetime) -> dict[str, Any]:
    current = recent.reply_rate if recent.leads else None
    initial = config.initial_success_rate
    history = [h for h in config.improvement.get("history", []) if h.get("date") != now.date().isoformat()]
    history.append(
        {
            "date": now.date().isoformat(),
            "reply_rate": None if current is None else round(current, 4),
            "meeting_rate": round(recent.meeting_rate, 4) if recent.leads else None,
            "leads": recent.leads,
        }
    )
    return {
        "since": config.learning_started_at.isoformat() if config.learning_started_at else None,
        "initial_reply_rate": None if initial is None else round(initial, 4),
        "current_reply_rate": None if current is None else round(current, 4),
        "change_points": None if current is None or initial is None else round(100 * (current - initial), 2),
        "relative_change": None if current is None or not initial else round(current / initial - 1, 4),
        "window_days": RECENT_DAYS,
        "history": history[-HISTORY_LENGTH:],
    }


def _load_config(session: Session, workspace_id: int) -> AdaptiveAIConfig:
    session.execute(
        insert(AdaptiveAIConfig)
        .values(workspace_id=workspace_id)
        .on_conflict_do_nothing(index_elements=["workspace_id"])
    )
    # Locked for the run: two learning runs of one workspace write one after the other, never interleaved.
    config = session.scalars(
        select(AdaptiveAIConfig).where(AdaptiveAIConfig.workspace_id == workspace_id).with_for_update()
    ).one()
    session.refresh(config)
    return config


def learn_adaptive_ai(session: Session, workspace_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Learn from the lookback window and store the result on the workspace's adaptive_ai_configs row."""
    now = now or datetime.now(UTC)
    if session.get(Workspace, workspace_id) is None:
        raise BadInput(f"workspace {workspace_id} does not exist")
    config = _load_config(session, workspace_id)
    if not config.enabled:
        return {"workspace_id": workspace_id, "status": "disabled"}
    since = now - timedelta(days=config.lookback_days)
    params = {
        "workspace_id": workspace_id,
        "since": since,
        "until": now,
        "recent_since": max(since, now - timedelta(days=RECENT_DAYS)),
    }
    baseline = Rates(0, 0, 0)
    recent = Rates(0, 0, 0)
    groups: list[tuple[str, str, Rates]] = []
    for row in session.execute(ICP_SQL, params):
        if row.attribute is None:
            baseline = Rates(row.leads, row.replies, row.meetings)
            recent = Rates(row.recent_leads, row.recent_replies, row.recent_meetings)
        elif row.value is not None:
            groups.append((row.attribute, row.value, Rates(row.leads, row.replies, row.meetings)))
    patterns, thin_values = rank_icp_values(groups, baseline, config.min_sample_size)
    template_rows = [(r.template_id, r.sends, r.replies, r.meetings) for r in session.execute(TEMPLATE_SQL, params)]
    templates, thin_templates = compare_templates(template_rows, config.min_sample_size)

    if config.learning_started_at is None:
        config.learning_started_at = now
    if config.initial_success_rate is None and recent.leads:
        config.initial_success_rate = recent.reply_rate
    config.learned_patterns = {
        "window": {"since": since.isoformat(), "until": now.isoformat()},
        "min_sample_size": config.min_sample_size,
        "method": "95% Wilson lower bound vs workspace baseline; templates: Beta(1+r, 1+n-r), P(best) Monte-Carlo",
        "baseline": {
            "leads": baseline.leads,
            "reply_rate": round(baseline.reply_rate, 4),
            "meeting_rate": round(baseline.meeting_rate, 4),
        },
        "icp": patterns,
        "top_icp": [p for p in patterns if p["above_baseline"]["reply"] or p["above_baseline"]["meeting"]],
        "insufficient_sample": thin_values,
        "templates_insufficient_sample": thin_templates,
    }
    config.best_templates = templates
    config.baseline_reply_rate = baseline.reply_rate if baseline.leads else None
    config.baseline_meeting_rate = baseline.meeting_rate if baseline.leads else None
    config.current_success_rate = recent.reply_rate if recent.leads else None
    config.improvement = _improvement(config, recent, now)
    config.samples_analyzed = baseline.leads
    config.last_learned_at = now
    config.updated_at = now
    top = config.learned_patterns["top_icp"][:5]
    return {
        "workspace_id": workspace_id,
        "status": "learned",
        "leads": baseline.leads,
        "baseline_reply_rate": config.baseline_reply_rate,
        "top_icp": [{"attribute": p["attribute"], "value": p["value"], "lift": p["reply_lift"]} for p in top],
        "best_template": templates[0]["template_id"] if templates else None,
        "improvement_points": config.improvement["change_points"],
    }
