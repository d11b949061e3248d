"""Settings read once from the environment and passed explicitly to each service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


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

    default_max_turns: int = Field(10, ge=1, le=1000, description="maxTurns of a job that does not set it.")
    model: str = Field("claude-sonnet-4-5", description="Anthropic model name the runner asks for.")
    max_tokens: int = Field(4096, ge=1, description="max_tokens of each model call, in tokens.")
    lease_seconds: float = Field(
        30.0, gt=0, description="Seconds a runner may stay silent before another runner takes its job over."
    )
    runner_concurrency: int = Field(16, ge=1, description="Jobs one runner process works on at once.")
    tool_output_bytes: int = Field(32 * 1024, ge=1024, description="Cap on one tool result sent to the model, bytes.")
    max_retry_wait: float = Field(
        60.0, ge=0, description="Longest wait, in seconds, the runner retries a transient model error for."
    )
    model_timeout: float = Field(600.0, gt=0, description="Timeout of one model call, in seconds.")

    def resolved_repos_dir(self) -> Path:
        """Return the repositories root, defaulting to `<data_dir>/repos`."""
        return (self.repos_dir or self.data_dir / "repos").resolve()

    def resolved_workspaces_dir(self) -> Path:
        """Return the workspaces root, defaulting to `<data_dir>/workspaces`."""
        return (self.workspaces_dir or self.data_dir / "workspaces").resolve()

    def nats_servers(self) -> list[str]:
        """Split `nats_url` into the list of servers to connect to."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


class ModelSettings(BaseSettings):
    """How the runner reaches the model: the Anthropic API, or the built-in simulator when no key is set."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic API key; unset means the simulator.")
    anthropic_base_url: str | None = Field(None, description="Base URL of the Messages API.")
