"""Alert rules: pure evaluation over events, checkpoints and counters, with deduplication by rule and subject."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts.checkpoint import Checkpoint
from contracts.events import Event, JobCancelled, JobCompleted, JobFailed, JobResumed
from services.alerts.settings import AlertSettings
from services.common.clock import parse_iso, to_iso

__all__ = ["Alert", "AlertEngine", "AlertGate"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: `key` names its subject (a job id, a subject, `window`) for deduplication."""

    rule: str
    severity: str
    message: str
    key: str
    job_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def document(self, moment: datetime) -> dict[str, Any]:
        """Return the JSON document published on `turnlog.alerts.<rule>`."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "jobId": self.job_id,
            "message": self.message,
            "at": to_iso(moment),
            "details": self.details,
        }


class AlertGate:
    """Lets an alert through unless the same rule and key passed within the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self._window = timedelta(seconds=window)
        self._sent: dict[tuple[str, str], datetime] = {}

    def admit(self, alert: Alert, moment: datetime) -> bool:
        """Record and admit `alert`, or reject it as a repeat inside the window."""
        last = self._sent.get((alert.rule, alert.key))
        if last is not None and moment - last < self._window:
            return False
        self._sent[(alert.rule, alert.key)] = moment
        if len(self._sent) > 10_000:
            cutoff = moment - self._window
            self._sent = {key: when for key, when in self._sent.items() if when >= cutoff}
        return True


@dataclass(slots=True)
class _End:
    at: datetime
    job_id: str
    status: str


class AlertEngine:
    """Evaluates every rule; keeps the recent job ends the window rules need, keyed by stream sequence."""

    def __init__(self, settings: AlertSettings) -> None:
        self._settings = settings
        self._ends: dict[int, _End] = {}
        self._resumed: dict[int, tuple[datetime, str]] = {}

    def on_event(self, event: Event, sequence: int, *, resume_of: str | None, moment: datetime) -> list[Alert]:
        """Take one terminal or resumed event; return the alerts it raises.

        `resume_of` is the job this one was resumed from, when it was.
        """
        self.remember(event, sequence)
        alerts: list[Alert] = []
        if isinstance(event, JobFailed):
            alerts.extend(self._failed(event, resume_of))
        alerts.extend(self.window_alerts(moment))
        return [alert for alert in alerts if self._settings.enabled(alert.rule)]

    def remember(self, event: Event, sequence: int) -> None:
        """Add an event to the window without alerting on it, as when catching up after a restart."""
        at = parse_iso(event.at)
        if isinstance(event, JobFailed):
            self._ends[sequence] = _End(at, event.job_id, "failed")
        elif isinstance(event, JobCompleted):
            self._ends[sequence] = _End(at, event.job_id, "completed")
        elif isinstance(event, JobCancelled):
            self._ends[sequence] = _End(at, event.job_id, "cancelled")
        elif isinstance(event, JobResumed):
            self._resumed[sequence] = (at, event.job_id)

    def _failed(self, event: JobFailed, resume_of: str | None) -> list[Alert]:
        alerts: list[Alert] = []
        kinds = self._settings.alerting_kinds()
        if not kinds or event.kind in kinds:
            retry = " (retryable)" if event.retryable else ""
            alerts.append(
                Alert(
                    rule="job_failed",
                    severity="warning" if event.retryable else "error",
                    message=f"job {event.job_id} failed after {event.turns} turns: "
                    f"{event.kind}{retry}: {event.message}",
                    key=event.job_id,
                    job_id=event.job_id,
                    details={"kind": event.kind, "retryable": event.retryable, "turns": event.turns},
                )
            )
        if resume_of is not None:
            alerts.append(
                Alert(
                    rule="resume_failed",
                    severity="error",
                    message=f"job {event.job_id}, resumed from job {resume_of}, failed again: {event.kind}",
                    key=event.job_id,
                    job_id=event.job_id,
                    details={"kind": event.kind, "resumeOf": resume_of},
                )
            )
        return alerts

    def window_alerts(self, moment: datetime) -> list[Alert]:
        """Evaluate failure_rate and unresumed_failures over the ends of the last window."""
        cutoff = moment - timedelta(seconds=self._settings.failure_window)
        self._ends = {seq: end for seq, end in self._ends.items() if end.at >= cutoff}
        self._resumed = {seq: item for seq, item in self._resumed.items() if item[0] >= cutoff}
        window = int(self._settings.failure_window)
        alerts: list[Alert] = []

        ended = len(self._ends)
        failed_jobs = {end.job_id for end in self._ends.values() if end.status == "failed"}
        failed = sum(1 for end in self._ends.values() if end.status == "failed")
        rate = failed / ended if ended else 0.0
        if ended >= self._settings.failure_min_jobs and rate > self._settings.failure_rate:
            alerts.append(
                Alert(
                    rule="failure_rate",
                    severity="error",
                    message=f"{failed} of {ended} jobs ended in the last {window}s failed ({rate:.0%}), "
                    f"above the {self._settings.failure_rate:.0%} threshold",
                    key="window",
                    details={"failed": failed, "ended": ended, "rate": round(rate, 4), "windowSeconds": window},
                )
            )

        resumed_jobs = {job_id for _, job_id in self._resumed.values()}
        waiting = sorted(failed_jobs - resumed_jobs)
        if len(waiting) >= self._settings.unresumed_failures:
            alerts.append(
                Alert(
                    rule="unresumed_failures",
                    severity="warning",
                    message=f"{len(waiting)} jobs failed in the last {window}s and were not resumed "
                    f"({len(resumed_jobs)} resumes in the same window)",
                    key="window",
                    details={"failed": len(failed_jobs), "resumed": len(resumed_jobs), "jobIds": waiting[:50]},
                )
            )
        return [alert for alert in alerts if self._settings.enabled(alert.rule)]

    def on_checkpoints(self, views: list[Checkpoint], moment: datetime) -> list[Alert]:
        """Evaluate job_unknown and near_max_turns over live checkpoints."""
        alerts: list[Alert] = []
        for view in views:
            silent = (moment - parse_iso(view.last_updated)).total_seconds()
            if view.job_status == "unknown" and silent >= self._settings.unknown_minutes * 60:
                alerts.append(
                    Alert(
                        rule="job_unknown",
                        severity="warning",
                        message=f"job {view.job_id} stopped reporting at turn {view.turns}/{view.max_turns} "
                        f"{silent / 60:.0f} minutes ago; its runner is gone, resume it with `turnlog resume`",
                        key=view.job_id,
                        job_id=view.job_id,
                        details={"turns": view.turns, "maxTurns": view.max_turns, "lastUpdated": view.last_updated},
                    )
                )
            if view.job_status == "running" and view.turns >= view.max_turns * self._settings.near_max_ratio:
                alerts.append(
                    Alert(
                        rule="near_max_turns",
                        severity="info",
                        message=f"job {view.job_id} is at turn {view.turns} of {view.max_turns}",
                        key=view.job_id,
                        job_id=view.job_id,
                        details={"turns": view.turns, "maxTurns": view.max_turns},
                    )
                )
        return [alert for alert in alerts if self._settings.enabled(alert.rule)]

    def on_projector(self, pending: int) -> list[Alert]:
        """Evaluate projector_lag from the projector consumer's pending and unacknowledged events."""
        if pending < self._settings.projector_lag or not self._settings.enabled("projector_lag"):
            return []
        return [
            Alert(
                rule="projector_lag",
                severity="warning",
                message=f"the projector is {pending} events behind; checkpoints and lists are out of date",
                key="projector",
                details={"pending": pending, "threshold": self._settings.projector_lag},
            )
        ]

    def on_dead_letter(self, subject: str, sequence: str, error: str) -> list[Alert]:
        """Alert on one event the projector could not decode and dead-lettered."""
        if not self._settings.enabled("dead_letter"):
            return []
        job_id = subject.split(".")[2] if subject.count(".") == 3 else None
        return [
            Alert(
                rule="dead_letter",
                severity="error",
                message=f"event {sequence} on {subject} cannot be decoded and was dead-lettered: {error}",
                key=f"{subject}:{sequence}",
                job_id=job_id,
                details={"subject": subject, "sequence": sequence, "error": error},
            )
        ]

    def on_flood(self, repository: str, issue: str, count: int) -> list[Alert]:
        """Alert on the gateway's flood guard tripping for one issue."""
        if not self._settings.enabled("webhook_flood"):
            return []
        return [
            Alert(
                rule="webhook_flood",
                severity="warning",
                message=f"webhook flood guard tripped: {count} job requests for {repository}#{issue}",
                key=f"{repository}#{issue}",
                details={"repository": repository, "issue": issue, "count": count},
            )
        ]
