"""Churn risk: one set-based SQL query for the features of every workspace, numpy scoring, one set-based write.

Flow of `score_churn_risk` (nightly for all workspaces; on demand for one):
1. `FEATURES_SQL` computes every workspace's engagement figures in one pass over activity and usage; its rows
   arrive as a binary COPY straight into numpy columns (`pgcopy`), no Python object per value.
2. Nightly only: the learned model is (re)trained on labelled history, i.e. past retention_metrics rows whose
   workspace did or did not cancel within `CHURN_HORIZON_DAYS` after them. The decision is kept in
   churn_models; on-demand runs reuse the latest decision.
3. `scoring` turns the feature matrix into 0-100 scores and signed top factors, vectorised.
4. The scores go back by binary COPY into a temporary table, and one `INSERT ... SELECT ... ON CONFLICT DO UPDATE`
   writes retention_metrics (one row per workspace per UTC day; a re-run the same day overwrites it, so the job
   is idempotent). The top-factor JSON is built there from the factor indices and weights.

Full runs are serialised by an advisory lock: a second beat (or a manual run) waits and then rewrites the same
rows, instead of racing the first for them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.orm import Session

from models.core import Metric
from models.growth import ChurnModel, ChurnModelKind, Milestone
from tasks.growth import pgcopy, scoring, txn
from tasks.growth.scoring import FEATURE_NAMES, TOP_FACTORS, LogisticModel

CHURN_HORIZON_DAYS = 30  # a label says: did this workspace cancel within 30 days of the snapshot?
TRAINING_LOOKBACK_DAYS = 365
TRAINING_MAX_ROWS = 500_000  # newest labelled snapshots only: bounded memory for the nightly fit
LOOKBACK_DAYS = 90  # the activity window; idleness is capped here

# Key actions are what a person does on purpose: adding leads, creating campaigns, generating copy. Emails sent
# and API calls run by themselves once a sequence or integration is set up, so they count towards the usage
# trend but not towards recency or active days (an abandoned account can keep sending for weeks).
KEY_ACTION_METRICS: tuple[Metric, ...] = (Metric.LEADS_CREATED, Metric.CAMPAIGNS_CREATED, Metric.AI_GENERATIONS)
_KEY_METRICS = ", ".join(f"'{m.value}'" for m in KEY_ACTION_METRICS)

# Every workspace with a subscription live at as_of. Windows are half-open (as_of - N days, as_of], in UTC days
# (`txn.utc`). psycopg placeholders: the query runs inside COPY, whose parameters psycopg binds as literals.
# Every output column is fixed-width and non-null (NULL stands in as NaN or '-infinity') so that COPY's binary
# rows have one layout numpy can read in one go.
FEATURES_SQL = f"""
WITH subs AS (
    SELECT DISTINCT ON (s.workspace_id)
           s.workspace_id, s.id AS subscription_id, s.plan_code
    FROM subscriptions s
    WHERE s.started_at <= %(as_of)s
      AND (s.ended_at IS NULL OR s.ended_at > %(as_of)s)
      AND (CAST(%(workspace_id)s AS bigint) IS NULL OR s.workspace_id = CAST(%(workspace_id)s AS bigint))
    ORDER BY s.workspace_id, s.started_at DESC, s.id DESC
),
usage AS (
    -- Active days are 24-hour buckets back from as_of, folded into a bitmask: one hash aggregate, no
    -- per-group sort that count(DISTINCT ...) would need.
    SELECT e.workspace_id,
           max(e.occurred_at) FILTER (WHERE e.metric IN ({_KEY_METRICS})) AS last_usage_at,
           bit_count(CAST(bit_or(CAST(1 AS bigint) << floor(extract(epoch FROM %(as_of)s - e.occurred_at) / 86400)::int)
               FILTER (WHERE e.occurred_at > %(as_of)s - interval '30 days' AND e.metric IN ({_KEY_METRICS}))
               AS bit(64))) AS active_days_30d,
           coalesce(sum(e.quantity) FILTER (WHERE e.occurred_at > %(as_of)s - interval '14 days'), 0) AS last_14,
           coalesce(sum(e.quantity) FILTER (WHERE e.occurred_at > %(as_of)s - interval '28 days'
                                              AND e.occurred_at <= %(as_of)s - interval '14 days'), 0) AS prev_14
    FROM usage_events e
    WHERE e.occurred_at > %(as_of)s - interval '90 days' AND e.occurred_at <= %(as_of)s
      AND (CAST(%(workspace_id)s AS bigint) IS NULL OR e.workspace_id = CAST(%(workspace_id)s AS bigint))
    GROUP BY e.workspace_id
),
members AS (
    SELECT tm.workspace_id,
           count(*) AS seats_used,
           max(tm.last_active_at) FILTER (WHERE tm.last_active_at <= %(as_of)s) AS last_active_at,
           count(*) FILTER (WHERE tm.last_active_at > %(as_of)s - interval '1 day'
                              AND tm.last_active_at <= %(as_of)s) AS dau,
           count(*) FILTER (WHERE tm.last_active_at > %(as_of)s - interval '30 days'
                              AND tm.last_active_at <= %(as_of)s) AS mau
    FROM team_members tm
    WHERE tm.created_at <= %(as_of)s
      AND (CAST(%(workspace_id)s AS bigint) IS NULL OR tm.workspace_id = CAST(%(workspace_id)s AS bigint))
    GROUP BY tm.workspace_id
),
milestones AS (
    SELECT m.workspace_id, count(DISTINCT m.milestone) AS reached, max(m.occurred_at) AS last_milestone_at
    FROM activation_milestones m
    WHERE m.occurred_at <= %(as_of)s
      AND (CAST(%(workspace_id)s AS bigint) IS NULL OR m.workspace_id = CAST(%(workspace_id)s AS bigint))
    GROUP BY m.workspace_id
),
quota AS (
    SELECT um.workspace_id,
           max(um.quantity::float / nullif((p.limits ->> um.metric::text)::float, 0)) AS utilisation
    FROM usage_metrics um
    JOIN subs ON subs.subscription_id = um.subscription_id
    JOIN plans p ON p.code = subs.plan_code
    WHERE um.period_start <= %(as_of)s AND um.period_end > %(as_of)s
    GROUP BY um.workspace_id
),
nps AS (
    SELECT latest.workspace_id,
           count(*) AS responses,
           100.0 * (count(*) FILTER (WHERE latest.score >= 9) - count(*) FILTER (WHERE latest.score <= 6))
               / count(*) AS nps
    FROM (
        SELECT DISTINCT ON (r.user_id) r.workspace_id, r.score
        FROM nps_responses r
        WHERE r.responded_at > %(as_of)s - interval '90 days' AND r.responded_at <= %(as_of)s
          AND (CAST(%(workspace_id)s AS bigint) IS NULL OR r.workspace_id = CAST(%(workspace_id)s AS bigint))
        ORDER BY r.user_id, r.responded_at DESC, r.id DESC
    ) latest
    GROUP BY latest.workspace_id
)
SELECT CAST(subs.workspace_id AS int8),
       CAST(subs.subscription_id AS int8),
       CAST(array_position(enum_range(NULL::plan_tier), subs.plan_code) AS int2),
       CAST(p.rank AS int4),
       CAST(coalesce(greatest(u.last_usage_at, mem.last_active_at, ms.last_milestone_at), '-infinity')
            AS timestamptz),
       CAST(least(
           coalesce(extract(epoch FROM %(as_of)s - greatest(u.last_usage_at, mem.last_active_at, ms.last_milestone_at))
                    / 86400.0, %(lookback_days)s),
           %(lookback_days)s,
           greatest(extract(epoch FROM %(as_of)s - w.created_at) / 86400.0, 0)
       ) AS float8),
       CAST(coalesce(u.active_days_30d, 0) AS int4),
       CAST(coalesce(mem.dau, 0) AS int4),
       CAST(coalesce(mem.mau, 0) AS int4),
       CAST(coalesce(u.last_14, 0) AS int8),
       CAST(coalesce(u.prev_14, 0) AS int8),
       CAST(coalesce(ms.reached, 0) AS int4),
       CAST(coalesce(q.utilisation, 0) AS float8),
       CAST(coalesce(mem.seats_used, 0) AS int4),
       CAST(coalesce(n.nps, 'NaN') AS float8),
       CAST(coalesce(n.responses, 0) AS int4),
       CAST(greatest(extract(epoch FROM %(as_of)s - w.created_at) / 86400.0, 0) AS float8)
FROM subs
JOIN workspaces w ON w.id = subs.workspace_id
JOIN plans p ON p.code = subs.plan_code
LEFT JOIN usage u ON u.workspace_id = subs.workspace_id
LEFT JOIN members mem ON mem.workspace_id = subs.workspace_id
LEFT JOIN milestones ms ON ms.workspace_id = subs.workspace_id
LEFT JOIN quota q ON q.workspace_id = subs.workspace_id
LEFT JOIN nps n ON n.workspace_id = subs.workspace_id
ORDER BY subs.workspace_id
"""

# The feature query's columns, in order, with their wire types.
FEATURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("workspace_id", "int8"),
    ("subscription_id", "int8"),
    ("plan_code_index", "int2"),  # 1-based position in enum plan_tier
    ("plan_tier", "int4"),
    ("last_key_action_at", "timestamptz"),  # '-infinity' = never
    ("days_since_last_key_action", "float8"),
    ("active_days_30d", "int4"),
    ("dau", "int4"),
    ("mau", "int4"),
    ("last_14", "int8"),
    ("prev_14", "int8"),
    ("milestones_reached", "int4"),
    ("quota_utilisation", "float8"),
    ("seats_used", "int4"),
    ("nps", "float8"),  # NaN = no answer in 90 days
    ("nps_responses", "int4"),
    ("tenure_days", "float8"),
)


def feature_params(as_of: datetime, workspace_id: int | None = None) -> dict[str, Any]:
    return {"as_of": as_of, "workspace_id": workspace_id, "lookback_days": LOOKBACK_DAYS}


@dataclass
class FeatureFrame:
    """Column arrays of the feature query, plus the scoring matrix in FEATURE_NAMES order."""

    columns: dict[str, np.ndarray]
    matrix: np.ndarray

    def __len__(self) -> int:
        return int(self.matrix.shape[0])


def prepare(session: Session) -> None:
    """UTC day arithmetic, and JIT off for this transaction: the planner's row estimates for the joined
    aggregates are far too high, so PostgreSQL would spend seconds compiling a query that runs in less
    (measured in bench_growth)."""
    txn.utc(session)
    session.execute(text("SET LOCAL jit = off"))


def load_features(session: Session, as_of: datetime, workspace_id: int | None = None) -> FeatureFrame:
    columns = pgcopy.copy_out(session, FEATURES_SQL, feature_params(as_of, workspace_id), FEATURE_COLUMNS)
    last_14 = columns["last_14"].astype(np.float64)
    prev_14 = columns["prev_14"].astype(np.float64)
    # Stickiness = DAU/MAU of the workspace: usage events carry no user, so a day with a key action counts
    # as the workspace being active that day (active days in the last 30 / 30).
    columns["stickiness"] = columns["active_days_30d"] / 30.0
    columns["usage_trend"] = scoring.usage_trend(last_14, prev_14)
    columns["milestone_share"] = columns["milestones_reached"] / len(Milestone)
    matrix = np.column_stack([columns[name].astype(np.float64) for name in FEATURE_NAMES])
    return FeatureFrame(columns=columns, matrix=matrix)


# Labels: did the workspace's subscription end (cancelled) within the horizon after the snapshot's UTC day?
TRAINING_SQL = """
SELECT rm.as_of,
       CAST(rm.days_since_last_key_action AS float8), CAST(rm.stickiness AS float8), CAST(rm.usage_trend AS float8),
       CAST(rm.milestone_share AS float8), CAST(rm.quota_utilisation AS float8), CAST(rm.seats_used AS float8),
       CAST(coalesce(rm.nps, 'NaN') AS float8), CAST(rm.tenure_days AS float8), CAST(rm.plan_tier AS float8),
       EXISTS (
           SELECT 1 FROM subscriptions s
           WHERE s.workspace_id = rm.workspace_id
             AND s.status = 'cancelled'
             AND s.ended_at > CAST(rm.as_of AS timestamp) AT TIME ZONE 'UTC'
             AND s.ended_at <= CAST(rm.as_of + %(horizon_days)s AS timestamp) AT TIME ZONE 'UTC'
       )
FROM retention_metrics rm
WHERE rm.as_of <= %(labelled_until)s AND rm.as_of > %(oldest)s
ORDER BY rm.as_of DESC, rm.workspace_id
LIMIT %(max_rows)s
"""
TRAINING_COLUMNS: tuple[tuple[str, str], ...] = (
    ("as_of", "date"),
    *((name, "float8") for name in FEATURE_NAMES),
    ("churned", "bool"),
)


def fit_history(bind: Session | Connection, as_of: datetime) -> scoring.TrainingOutcome:
    """Fetch the labelled history and fit on it (the numpy work, no writes): `bind` may be its own connection."""
    today = as_of.astimezone(UTC).date()
    data = pgcopy.copy_out(
        bind,
        TRAINING_SQL,
        {
            "horizon_days": CHURN_HORIZON_DAYS,
            "labelled_until": today - timedelta(days=CHURN_HORIZON_DAYS),
            "oldest": today - timedelta(days=TRAINING_LOOKBACK_DAYS),
            "max_rows": TRAINING_MAX_ROWS,
        },
        TRAINING_COLUMNS,
    )
    if not data["as_of"].size:
        return scoring.TrainingOutcome(model=None, used="rule", reason="no labelled history")
    features = np.column_stack([data[name] for name in FEATURE_NAMES])
    return scoring.train_with_time_holdout(features, data["churned"], data["as_of"])


def _fit_history_apart(engine: Engine, as_of: datetime) -> scoring.TrainingOutcome:
    with engine.connect() as connection:
        try:
            return fit_history(connection, as_of)
        finally:
            connection.rollback()


def train(session: Session, as_of: datetime, outcome: scoring.TrainingOutcome | None = None) -> ChurnModel:
    """Decide the model from labelled history (unless already fitted) and record the decision and its AUCs."""
    if outcome is None:
        outcome = fit_history(session, as_of)
    record = ChurnModel(
        trained_at=as_of,
        kind=ChurnModelKind(outcome.used),
        reason=outcome.reason,
        parameters=outcome.model.to_json() if outcome.model is not None else None,
        n_train=outcome.n_train,
        n_holdout=outcome.n_holdout,
        positives=outcome.positives,
        negatives=outcome.negatives,
        holdout_auc=outcome.holdout_auc,
        rule_holdout_auc=outcome.rule_holdout_auc,
    )
    session.add(record)
    session.flush()
    return record


def latest_model(session: Session) -> ChurnModel | None:
    return session.execute(select(ChurnModel).order_by(ChurnModel.id.desc()).limit(1)).scalar()


_FACTOR_SLOTS = range(1, TOP_FACTORS + 1)

# The scored rows, as they arrive by COPY. Dropped at commit; truncated first in case one transaction scores twice.
STAGE_TABLE = "growth_churn_scores"
STAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    *((name, pg_type) for name, pg_type in FEATURE_COLUMNS if name != "milestones_reached"),
    ("stickiness", "float8"),
    ("usage_trend", "float8"),
    ("milestone_share", "float8"),
    ("score", "float8"),
    ("level", "int2"),  # index into RISK_LEVELS
    *(column for k in _FACTOR_SLOTS for column in ((f"factor_{k}", "int2"), (f"weight_{k}", "float8"))),
    *((f"value_{k}", "float8") for k in _FACTOR_SLOTS),  # NaN = unknown
)
RISK_LEVELS = scoring.RISK_LEVELS

CREATE_STAGE_SQL = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE_TABLE} ("
    + ", ".join(f"{name} {pg_type} NOT NULL" for name, pg_type in STAGE_COLUMNS)
    + ") ON COMMIT DROP"
)
TRUNCATE_STAGE_SQL = text(f"TRUNCATE {STAGE_TABLE}")

# The explanation: [{"feature", "weight", "unit", "value"}, ...] largest contribution first.
_FACTORS_JSON = (
    "jsonb_build_array("
    + ", ".join(
        f"jsonb_build_object('feature', (CAST(:feature_names AS text[]))[t.factor_{k} + 1], 'weight', t.weight_{k}, "
        f"'unit', CAST(:unit AS text), 'value', nullif(t.value_{k}, 'NaN'))"
        for k in _FACTOR_SLOTS
    )
    + ")"
)

WRITE_SQL = text(
    f"""
INSERT INTO retention_metrics AS rm (
    workspace_id, subscription_id, as_of, scored_at, last_key_action_at, days_since_last_key_action,
    active_days_30d, stickiness, daily_active_members, monthly_active_members, usage_last_14d, usage_prev_14d,
    usage_trend, milestone_share, quota_utilisation, seats_used, nps, nps_responses, tenure_days, plan_code,
    plan_tier, churn_risk_score, risk_level, top_factors, model, churn_model_id)
SELECT t.workspace_id, t.subscription_id, :as_of_date, :scored_at, nullif(t.last_key_action_at, '-infinity'),
       t.days_since_last_key_action, t.active_days_30d, t.stickiness, t.dau, t.mau, t.last_14, t.prev_14,
       t.usage_trend, t.milestone_share, t.quota_utilisation, t.seats_used, nullif(t.nps, 'NaN'), t.nps_responses,
       t.tenure_days, plan.code, t.plan_tier, t.score, level.name, {_FACTORS_JSON},
       CAST(:model AS churn_model_kind), :model_id
FROM {STAGE_TABLE} t
-- The enum values by position, looked up once (hash join) rather than cast row by row.
JOIN unnest(enum_range(NULL::plan_tier)) WITH ORDINALITY AS plan(code, position)
  ON plan.position = t.plan_code_index
JOIN unnest(CAST(:levels AS churn_risk_level[])) WITH ORDINALITY AS level(name, position)
  ON level.position = t.level + 1
ON CONFLICT (workspace_id, as_of) DO UPDATE SET
    subscription_id = excluded.subscription_id, scored_at = excluded.scored_at,
    last_key_action_at = excluded.last_key_action_at, days_since_last_key_action = excluded.days_since_last_key_action,
    active_days_30d = excluded.active_days_30d, stickiness = excluded.stickiness,
    daily_active_members = excluded.daily_active_members, monthly_active_members = excluded.monthly_active_members,
    usage_last_14d = excluded.usage_last_14d, usage_prev_14d = excluded.usage_prev_14d,
    usage_trend = excluded.usage_trend, milestone_share = excluded.milestone_share,
    quota_utilisation = excluded.quota_utilisation, seats_used = excluded.seats_used, nps = excluded.nps,
    nps_responses = excluded.nps_responses, tenure_days = excluded.tenure_days, plan_code = excluded.plan_code,
    plan_tier = excluded.plan_tier, churn_risk_score = excluded.churn_risk_score, risk_level = excluded.risk_level,
    top_factors = excluded.top_factors, model = excluded.model, churn_model_id = excluded.churn_model_id
"""
)


def write_scores(
    session: Session,
    frame: FeatureFrame,
    scored: scoring.Scored,
    as_of: datetime,
    model_id: int | None,
) -> np.ndarray:
    """Stage the scored rows by COPY and upsert them into retention_metrics; returns each row's level index."""
    level_index = scoring.risk_level_index(scored.scores)
    factor_index, factor_weight = scored.top_factor_arrays()
    factor_value = np.take_along_axis(frame.matrix, factor_index, axis=1)
    computed = {
        "score": scored.scores,
        "level": level_index,
        **{f"factor_{k}": factor_index[:, k - 1] for k in _FACTOR_SLOTS},
        **{f"weight_{k}": np.round(factor_weight[:, k - 1], 4) for k in _FACTOR_SLOTS},
        **{f"value_{k}": np.round(factor_value[:, k - 1], 4) for k in _FACTOR_SLOTS},
    }
    session.execute(CREATE_STAGE_SQL)
    session.execute(TRUNCATE_STAGE_SQL)
    values = {**frame.columns, **computed}
    pgcopy.copy_in(session, STAGE_TABLE, [(name, pg_type, values[name]) for name, pg_type in STAGE_COLUMNS])
    session.execute(
        WRITE_SQL,
        {
            "as_of_date": as_of.date(),
            "scored_at": as_of,
            "feature_names": list(FEATURE_NAMES),
            "unit": scored.unit,
            "levels": [level.value for level in RISK_LEVELS],
            "model": scored.model,
            "model_id": model_id,
        },
    )
    return level_index


def score_churn_risk(
    session: Session, as_of: datetime, workspace_id: int | None = None, retrain: bool | None = None
) -> dict[str, Any]:
    """Score every live workspace (or one) as of `as_of`; retrains on full runs unless told otherwise."""
    as_of = as_of.astimezone(UTC)  # the row's day is the UTC day, whatever zone the caller's clock is in
    prepare(session)
    if workspace_id is None:
        txn.serialise(session, "score_churn_risk")
    if retrain is None:
        retrain = workspace_id is None
    if retrain:
        # The labelled history is at least 30 days old, long committed: fit on it over a second connection while
        # this one runs the feature query, the two heaviest parts side by side (PostgreSQL gives each its own
        # backend process). Recording the decision stays in this run's transaction.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churn-history") as pool:
            bind = session.get_bind()
            engine = bind.engine if isinstance(bind, Connection) else bind
            fitted = pool.submit(_fit_history_apart, engine, as_of)
            frame = load_features(session, as_of, workspace_id)
            decision: ChurnModel | None = train(session, as_of, fitted.result())
    else:
        frame = load_features(session, as_of, workspace_id)
        decision = latest_model(session)
    if decision is not None and decision.kind == ChurnModelKind.LOGISTIC and decision.parameters:
        scored = LogisticModel.from_json(decision.parameters).score(frame.matrix)
    else:
        scored = scoring.rule_score(frame.matrix)
    model_id = decision.id if decision is not None else None
    level_index = write_scores(session, frame, scored, as_of, model_id)
    counts = np.bincount(level_index, minlength=len(RISK_LEVELS))
    return {
        "as_of": as_of.isoformat(),
        "workspaces_scored": len(frame),
        "model": scored.model,
        "churn_model_id": model_id,
        "holdout_auc": decision.holdout_auc if decision is not None else None,
        "levels": {level.value: int(count) for level, count in zip(RISK_LEVELS, counts, strict=True)},
    }
