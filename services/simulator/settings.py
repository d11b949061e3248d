"""Settings of the model simulator, read once from `TURNLOG_SIM_*` environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.simulator.faults import FaultSpec, parse_fault_specs

__all__ = ["SimulatorSettings"]


class SimulatorSettings(BaseSettings):
    """Knobs of the model simulator; pass one instance to `create_app`."""

    model_config = SettingsConfigDict(env_prefix="TURNLOG_SIM_", frozen=True, extra="ignore")

    faults: str = Field(
        default="",
        description=(
            "Comma-separated planned failures, env TURNLOG_SIM_FAULTS, default empty (no faults). "
            "`STATUS@TURN` fails the first request for TURN with that HTTP status, `STATUS:SECONDS@TURN` "
            "also sets `retry-after` in seconds, `overloaded-stream@TURN` breaks a streamed answer "
            "with an `overloaded_error` event, and `max_tokens@TURN` answers with its last block cut off "
            "at max_tokens."
        ),
    )
    latency_ms: float = Field(
        default=0.0,
        ge=0.0,
        description="Artificial delay before each answer, in milliseconds, default 0; used by benchmarks.",
    )
    max_logged_requests: int = Field(
        default=500,
        ge=1,
        description="Number of most recent request bodies kept for `GET /_sim/requests`, default 500.",
    )

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: str) -> str:
        # Parsing here makes a typo fail at start-up instead of on the turn it names.
        parse_fault_specs(value)
        return value

    def fault_specs(self) -> tuple[FaultSpec, ...]:
        """Return the parsed fault list."""
        return parse_fault_specs(self.faults)
