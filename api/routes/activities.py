"""POST /v1/activities: batch ingest of sales rep activity, idempotent on `activity_id` within the workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import current_workspace, db_session
from api.schemas import ErrorOut
from tasks.sales.ingest import InvalidActivities, ingest_activities
from tasks.sales.schemas import MAX_BATCH, ActivityIn

router = APIRouter(prefix="/v1/activities", tags=["sales"])


class ActivityBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activities: list[ActivityIn] = Field(min_length=1, max_length=MAX_BATCH)


class ActivityBatchOut(BaseModel):
    received: int
    inserted: int = Field(description="new activities stored by this request")
    duplicates: int = Field(description="activity_ids already stored (or repeated in the batch): not stored again")


@router.post(
    "",
    response_model=ActivityBatchOut,
    responses={401: {"model": ErrorOut}, 413: {"model": ErrorOut}, 422: {"model": ErrorOut}},
)
def post_activities(
    body: ActivityBatchIn,
    workspace_id: int = Depends(current_workspace),
    session: Session = Depends(db_session),
) -> Any:
    """Store a batch of activities for the caller's workspace.

    Every item is checked before anything is written: one invalid item (a bad field, or a rep who is not a
    member of this workspace) rejects the whole batch with 422 and each problem named by its index
    (`activities.<index>.<field>`). A repeated `activity_id` is counted under `duplicates` and not stored again.
    """
    try:
        result = ingest_activities(session, workspace_id, body.activities)
        session.commit()
    except InvalidActivities as exc:
        session.rollback()
        fields = [
            {"field": f"activities.{item.index}.{item.field}", "message": item.message, "type": "value_error"}
            for item in exc.items
        ]
        return JSONResponse(
            {"error": f"invalid request: {len(fields)} invalid activities", "task": None, "fields": fields},
            status_code=422,
        )
    return ActivityBatchOut(**result.as_dict())
