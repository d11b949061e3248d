"""Settings read once from the environment and passed explicitly to each service."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> object:
    """Turn `90`, `90s`, `15m`, `24h` or `7d` into seconds; other values go on to normal validation."""
    if not isinstance(value, str):
        return value
    found = _DURATION.match(value)
    if found is None:
        raise ValueError(f"invalid duration {value!r}: use seconds, or a number with s, m, h or d such as 24h")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, also accepted as `15m`, `24h` or `7d` from the environment."""


class Settings(BaseSettings):
    """Every turnlog setting, each read from the `TURNLOG_` environment variable of the same name."""

    model_config = SettingsConfigDict(env_prefix="TURNLOG_", frozen=True, extra="ignore")

    nats_url: str = Field(DEFAULT_NATS_URL, description="NATS server URL(s), comma-separated for a cluster.")
    data_dir: Path = Field(Path(".turnlog"), description="Where `turnlog up` keeps the NATS store and workspaces.")
    repos_dir: Path | None = Field(
        None, description="Root of the git repositories, `owner/name` below it. Default: <data_dir>/repos."
    )
    workspaces_dir: Path | None = Field(None, description="Per-job checkouts. Default: <data_dir>/workspaces.")
    api_token: SecretStr | None = Field(None, description="Bearer token every API route but /webhook requires.")
    webhook_secret: SecretStr | None = Field(None, description="GitHub webhook secret for X-Hub-Signature-256.")
    replicas: int = Field(1, ge=1, le=5, description="Replicas of every stream and KV bucket (3 in a cluster).")

    allowed_repos: str = Field(
        "", description="Comma-separated owner/name repositories the gateway accepts; empty accepts every one."
    )
    flood_max_jobs: int = Field(5, ge=1, description="Jobs one issue may start within flood_window_seconds.")
    flood_window_seconds: float = Field(600.0, gt=0, description="Window of the per-issue flood guard, seconds.")
    webhook_publish_timeout: float = Field(
        0.5, gt=0, description="Seconds the gateway waits for NATS before responding 503 so GitHub can redeliver."
    )
    allow_private_callbacks: bool = Field(
        False, description="Accept callback URLs on loopback, link-local and private addresses."
    )
    default_max_turns: int = Field(10, ge=1, le=1000, description="maxTurns of a job that does not set it.")
    model: str = Field("claude-sonnet-4-5", description="Anthropic model name the runner asks for.")
    max_tokens: int = Field(4096, ge=1, description="max_tokens of each model call, in tokens.")
    lease_seconds: float = Field(
        30.0, gt=0, description="Seconds a runner may stay silent before another runner takes its job over."
    )
    store_retry_window: Duration = Field(
        30.0,
        gt=0,
        description="Seconds an append or history read retries while NATS elects a new stream leader "
        "before it gives up; elections take 4 to 9 s, longer on a loaded host.",
    )
    runner_concurrency: int = Field(16, ge=1, description="Jobs one runner process works on at once.")
    tool_output_bytes: int = Field(32 * 1024, ge=1024, description="Cap on one tool result sent to the model, bytes.")
    max_retry_wait: float = Field(
        60.0, ge=0, description="Maximum total wait, in seconds, while the runner retries a transient model error."
    )
    model_timeout: float = Field(600.0, gt=0, description="Timeout of one model call, in seconds.")
    shutdown_grace: float = Field(
        10.0,
        ge=0,
        description="Seconds a stopping runner waits for in-flight turns to be recorded before it hands "
        "their jobs back unfinished; default 10.",
    )
    runner_crash_at: str | None = Field(
        None,
        description="Test hook, never set in production: `POINT:TURN` makes the runner process kill itself "
        "with SIGKILL at POINT (before_model, after_model, after_tool, after_append) of turn TURN. Default unset.",
    )

    public_url: str = Field(
        "http://localhost:3000", description="Base URL users reach the API at; callbacks link checkpoints below it."
    )
    callback_secret: SecretStr | None = Field(
        None, description="Key of the callback signature `X-Turnlog-Signature: sha256=<HMAC>`; unset sends none."
    )
    callback_deadline: Duration = Field(3600.0, gt=0, description="Seconds the notifier retries one callback for.")
    callback_timeout: Duration = Field(10.0, gt=0, description="Timeout of one callback POST, in seconds.")
    callback_backoff: Duration = Field(
        1.0, gt=0, description="First retry delay of a callback in seconds, doubled per attempt (with jitter)."
    )
    callback_backoff_max: Duration = Field(300.0, gt=0, description="Longest delay between callback attempts, s.")
    callback_concurrency: int = Field(16, ge=1, description="Callbacks one notifier process delivers at once.")
    consumer_ack_wait: Duration = Field(
        30.0, gt=0, description="Seconds a notifier or auto-resume consumer may go silent before redelivery."
    )
    auto_resume: bool = Field(False, description="Resume failed jobs with a retryable failure automatically.")
    auto_resume_max_chain: int = Field(3, ge=0, description="Resumes at most per chain (resumeOf links), default 3.")
    auto_resume_backoff: Duration = Field(
        30.0, gt=0, description="Wait after a failure without retryNotBefore: this × 2^resumes-so-far, seconds."
    )
    auto_resume_recheck: Duration = Field(
        60.0, gt=0, description="Longest pause, in seconds, before a waiting failed job is looked at again."
    )
    retention_completed: Duration = Field(
        86400.0, gt=0, description="Age (by lastUpdated) after which completed jobs are deleted; default 24h."
    )
    retention_other: Duration = Field(
        604800.0, gt=0, description="Age after which failed, cancelled and unknown jobs are deleted; default 7d."
    )
    retention_interval: Duration = Field(
        900.0, gt=0, description="Seconds between two runs of the retention service; default 15m."
    )

    def resolved_repos_dir(self) -> Path:
        """Return the repositories root, defaulting to `<data_dir>/repos`."""
        return (self.repos_dir or self.data_dir / "repos").resolve()

    def resolved_workspaces_dir(self) -> Path:
        """Return the workspaces root, defaulting to `<data_dir>/workspaces`."""
        return (self.workspaces_dir or self.data_dir / "workspaces").resolve()

    def allowed_repositories(self) -> frozenset[str]:
        """Return the allow-list of repositories, empty when every repository is accepted."""
        return frozenset(name.strip().lower() for name in self.allowed_repos.split(",") if name.strip())

    def nats_servers(self) -> list[str]:
        """Split `nats_url` into the list of servers to connect to."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


class ModelSettings(BaseSettings):
    """How the runner reaches the model: the Anthropic API, or the built-in simulator when no key is set."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic API key; unset means the simulator.")
    anthropic_base_url: str | None = Field(None, description="Base URL of the Messages API.")
