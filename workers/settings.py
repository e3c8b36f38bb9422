"""Settings read from the environment (DESIGN.md's variables), once per process."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/artisan"
    redis_url: str = "redis://127.0.0.1:6379/0"

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    # "offline" unless a key is set (DESIGN.md): resolved in the validator below.
    llm_provider: Literal["offline", "openai"] | None = None
    llm_timeout_seconds: float = 30.0
    llm_max_attempts: int = 4
    # Transcripts longer than this many tokens are split into parts and the parts' answers merged.
    llm_chunk_tokens: int = Field(default=6000, ge=200)
    openai_transcription_model: str = "whisper-1"

    flower_basic_auth: str | None = None
    flower_port: int = 5555
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    worker_metrics_port: int | None = None

    # A queued job not started this long after it was last published is published again.
    redeliver_grace_seconds: int = Field(default=300, ge=1)
    # How many times a run may be lost (killed worker, hard time limit) before the job is failed.
    max_lost_runs: int = Field(default=5, ge=1)
    # Finished ledger rows (and with them their idempotency keys) are kept this many days.
    ledger_retention_days: int = Field(default=30, ge=1)
    api_max_body_bytes: int = 1024 * 1024
    # The usage route takes batches of up to 10,000 events (about 1.3 MB of JSON), so it gets a larger cap.
    api_max_usage_body_bytes: int = 4 * 1024 * 1024

    # Invoices stay draft this long after their period ends; late usage still counts until finalisation.
    billing_invoice_grace_seconds: int = Field(default=3600, ge=0)
    # Usage events may be stamped at most this far ahead of the server's clock (clock skew, not scheduling).
    billing_max_future_seconds: int = Field(default=300, ge=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_provider(self) -> Settings:
        if self.llm_provider is None:
            self.llm_provider = "openai" if self.openai_api_key else "offline"
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
