"""POST/GET/DELETE /v1/jobs: the ledger through HTTP, scoped to the caller's workspace."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from api.deps import current_workspace, db_session
from api.outbox import relay
from api.schemas import ErrorOut, JobAccepted, JobLinks, JobOut, JobPage, build_enqueue_model
from api.store import ledger
from models.core import Job, JobStatus
from workers.ledger import IdempotencyConflict, Publishable, validate_args
from workers.metrics import JOBS_ENQUEUED

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EnqueueJob = build_enqueue_model()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
    429: {"model": ErrorOut},
    503: {"model": ErrorOut},
}


@router.post("", status_code=202, response_model=JobAccepted, responses={200: {"model": JobAccepted}, **_ERRORS})
async def enqueue_job(
    body: EnqueueJob,  # type: ignore[valid-type]
    response: Response,
    workspace_id: int = Depends(current_workspace),
) -> JobAccepted:
    """Write the job to the ledger (committed), then hand it to the outbox relay, which publishes it.

    The same `idempotency_key` with the same payload returns the existing job (200); with another payload, 409.
    A `run_at` in the future is stored and published by the sweeper when due, never as a broker ETA.
    `args.workspace_id`, where a task has it, must be the key's own workspace (403 otherwise); left out, it is.
    """
    args = body.args.model_dump(mode="json", exclude_unset=True)
    if "workspace_id" in type(body.args).model_fields:
        named = args.get("workspace_id")
        if named is not None and named != workspace_id:
            JOBS_ENQUEUED.labels(task=body.task, outcome="forbidden").inc()
            raise HTTPException(
                status_code=403,
                detail={
                    "error": f"forbidden for {body.task}: args.workspace_id is not the API key's workspace",
                    "task": body.task,
                    "fields": [{"field": "args.workspace_id", "message": "not the API key's workspace"}],
                },
            )
        args["workspace_id"] = workspace_id
    # The worker validates with the task's own model: so does the ledger, and stores exactly what it will see.
    normalised = validate_args(body.task, args).model_dump(mode="json", exclude_unset=True)
    try:
        recorded = await ledger.record(
            body.task, normalised, workspace_id=workspace_id, idempotency_key=body.idempotency_key, run_at=body.run_at
        )
    except IdempotencyConflict as exc:
        JOBS_ENQUEUED.labels(task=body.task, outcome="conflict").inc()
        raise HTTPException(status_code=409, detail=f"{exc} (job {exc.job_id})") from exc
    accepted = JobAccepted(
        id=recorded.id, task=body.task, status=recorded.status, links=JobLinks(self=f"/v1/jobs/{recorded.id}")
    )
    if not recorded.created:
        JOBS_ENQUEUED.labels(task=body.task, outcome="duplicate").inc()
        response.status_code = 200
        return accepted
    if body.run_at is None or body.run_at <= datetime.now(UTC):
        relay.submit([Publishable(recorded.id, body.task, normalised)])
        JOBS_ENQUEUED.labels(task=body.task, outcome="accepted").inc()
    else:
        JOBS_ENQUEUED.labels(task=body.task, outcome="scheduled").inc()
    return accepted


def _own_job(session: Session, job_id: uuid.UUID, workspace_id: int) -> Job:
    job = session.execute(select(Job).where(Job.id == job_id, Job.workspace_id == workspace_id)).scalar_one_or_none()
    if job is None:
        # Another workspace's job answers exactly like a missing one: existence is not leaked.
        raise HTTPException(status_code=404, detail="job not found")
    return job


@router.get("/{job_id}", response_model=JobOut, responses=_ERRORS)
def get_job(
    job_id: uuid.UUID, workspace_id: int = Depends(current_workspace), session: Session = Depends(db_session)
) -> JobOut:
    return JobOut.model_validate(_own_job(session, job_id, workspace_id), from_attributes=True)


@router.delete("/{job_id}", response_model=JobOut, responses=_ERRORS)
def cancel_job(
    job_id: uuid.UUID, workspace_id: int = Depends(current_workspace), session: Session = Depends(db_session)
) -> JobOut:
    """Cancel a job that has not started; a worker that receives it later skips it. Running or finished: 409."""
    cancelled = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.workspace_id == workspace_id,
            Job.status.in_([JobStatus.QUEUED, JobStatus.RETRYING]),
        )
        .values(status=JobStatus.CANCELLED, finished_at=datetime.now(UTC))
        .returning(Job.id)
    ).scalar_one_or_none()
    session.commit()
    job = _own_job(session, job_id, workspace_id)
    if cancelled is None:
        raise HTTPException(
            status_code=409, detail=f"job is {job.status.value}; only a job not yet started can be cancelled"
        )
    return JobOut.model_validate(job, from_attributes=True)


def _encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.enqueued_at.isoformat()}|{job.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(stamp), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPException(status_code=422, detail="cursor is not one this API issued") from exc


@router.get("", response_model=JobPage, responses=_ERRORS)
def list_jobs(
    status: JobStatus | None = None,
    task: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=200),
    workspace_id: int = Depends(current_workspace),
    session: Session = Depends(db_session),
) -> JobPage:
    """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    query = select(Job).where(Job.workspace_id == workspace_id)
    if status is not None:
        query = query.where(Job.status == status)
    if task is not None:
        query = query.where(Job.task == task)
    if cursor is not None:
        stamp, last_id = _decode_cursor(cursor)
        query = query.where(or_(Job.enqueued_at < stamp, and_(Job.enqueued_at == stamp, Job.id < last_id)))
    rows = session.execute(query.order_by(Job.enqueued_at.desc(), Job.id.desc()).limit(limit + 1)).scalars().all()
    items = [JobOut.model_validate(r, from_attributes=True) for r in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return JobPage(items=items, next_cursor=next_cursor)
