"""Alert rules and thresholds, from `TURNLOG_ALERT_*` variables and the optional TOML file `TURNLOG_ALERTS_FILE`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contracts import topology
from services.common.settings import Duration

__all__ = ["RULES", "AlertSettings"]

RULES = (
    "job_failed",
    "resume_failed",
    "job_unknown",
    "near_max_turns",
    "failure_rate",
    "unresumed_failures",
    "projector_lag",
    "dead_letter",
    "webhook_flood",
)
"""Every rule name; an alert of rule R is published on `turnlog.alerts.R`."""


class AlertSettings(BaseSettings):
    """Alert settings; an environment variable wins over the same key in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="TURNLOG_ALERT_", frozen=True, extra="ignore")

    webhook_url: SecretStr | None = Field(
        None, description='Slack-compatible incoming webhook that receives `{"text": ...}`; unset sends none.'
    )
    dedup_seconds: Duration = Field(
        600.0,
        ge=0,
        le=topology.ALERT_BUCKET_TTL_SECONDS,
        description="Seconds during which the same alert (rule and subject) is not sent again, by any alerts "
        "process; at most 7 days, how long the alert bucket keeps an entry.",
    )
    disabled_rules: str = Field("", description="Comma-separated rule names that never fire; default none.")
    failed_kinds: str = Field(
        "", description="Comma-separated failure kinds that fire job_failed; empty (default) means every kind."
    )
    unknown_minutes: float = Field(
        10.0, ge=0, description="Minutes a job may stay `unknown` (runner gone) before job_unknown fires."
    )
    near_max_ratio: float = Field(
        0.9, gt=0, le=1, description="Share of maxTurns a running job reaches to fire near_max_turns; default 0.9."
    )
    failure_window: Duration = Field(
        3600.0, gt=0, description="Seconds of recent job ends that failure_rate and unresumed_failures look at."
    )
    failure_rate: float = Field(
        0.5, ge=0, le=1, description="Share of failed jobs among ended jobs in the window above which it fires."
    )
    failure_min_jobs: int = Field(5, ge=1, description="Ended jobs the window needs before failure_rate can fire.")
    unresumed_failures: int = Field(
        5, ge=1, description="Failed jobs in the window not resumed (yet) at which unresumed_failures fires."
    )
    projector_lag: int = Field(
        1000, ge=1, description="Events the projector has not applied yet at which projector_lag fires."
    )
    interval: Duration = Field(
        30.0, gt=0, description="Seconds between two evaluations of the checkpoint and projector rules."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then the environment, then `TURNLOG_ALERTS_FILE` when it is set."""
        path = os.environ.get("TURNLOG_ALERTS_FILE")
        if not path:
            return (init_settings, env_settings)
        if not Path(path).is_file():
            raise ValueError(f"TURNLOG_ALERTS_FILE {path!r} is not a file; fix the path or unset it")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))

    def enabled(self, rule: str) -> bool:
        """Tell whether `rule` may fire."""
        return rule not in _names(self.disabled_rules)

    def alerting_kinds(self) -> frozenset[str]:
        """Return the failure kinds job_failed fires for; empty means every kind."""
        return _names(self.failed_kinds)


def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())
