"""The `turnlog` command: every subcommand of the user-facing interface."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import pydantic

from services.cli.client import ApiClient, CliError
from services.cli.monitor import follow
from services.cli.ops import cleanup
from services.cli.output import checkpoint_table, console
from services.cli.render import checkpoint_block, format_time, message_history, shorten

__all__ = ["main"]

SERVICES = ("gateway", "api", "runner", "projector", "notifier", "alerts", "autoresume", "retention")
_STATUSES = ("queued", "running", "failed", "completed", "cancelled", "resumed", "unknown")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document with the API's fields.")


def _emit_json(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="turnlog")
@click.option("--no-color", is_flag=True, help="Print plain text without colours (also when NO_COLOR is set).")
def cli(no_color: bool) -> None:
    """turnlog: durable, inspectable and resumable AI coding-agent jobs on NATS JetStream.

    Commands that talk to a running stack use TURNLOG_API_URL (default http://localhost:3000) and
    send TURNLOG_API_TOKEN as a bearer token when it is set. Exit codes: 0 success, 1 the operation
    failed or was refused, 2 bad usage, 3 the stack is unreachable.
    """
    console(no_color=no_color)


@cli.command()
@click.option("--port", default=3000, show_default=True, help="TCP port of the webhook and the REST API.")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".turnlog"),
    show_default=True,
    envvar="TURNLOG_DATA_DIR",
    help="Folder for the embedded NATS store, repositories and workspaces [env TURNLOG_DATA_DIR].",
)
@click.option("--nats-url", default=None, help="Use this NATS server instead of starting one [env TURNLOG_NATS_URL].")
def up(port: int, data_dir: Path, nats_url: str | None) -> None:
    """Start every service; without --nats-url, on an embedded NATS server."""
    from services.cli.stack import StackOptions, run_stack

    _configure_logging()
    nats_url = nats_url or os.environ.get("TURNLOG_NATS_URL")
    options = StackOptions(port=port, data_dir=data_dir.resolve(), nats_url=nats_url, announce=_announce)
    os.environ.setdefault("TURNLOG_DATA_DIR", str(options.data_dir))
    asyncio.run(run_stack(options))


@cli.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--port", default=3000, show_default=True, help="TCP port, for the gateway and api services.")
def serve(service: str, port: int) -> None:
    """Run one service alone against TURNLOG_NATS_URL."""
    from services.cli.stack import StackOptions, run_stack

    _configure_logging()
    nats_url = os.environ.get("TURNLOG_NATS_URL", "nats://127.0.0.1:4222")
    data_dir = Path(os.environ.get("TURNLOG_DATA_DIR", ".turnlog")).resolve()
    options = StackOptions(port=port, data_dir=data_dir, nats_url=nats_url, services=(service,), announce=_announce)
    asyncio.run(run_stack(options))


@cli.command()
@click.argument("job_id")
def monitor(job_id: str) -> None:
    """Follow a job live until it ends; exit 0 when it completed, 1 when it failed or was cancelled.

    Reconnects by itself when the connection drops and continues after the last event it showed.
    """
    with _client() as client:
        job = client.json("GET", f"/jobs/{job_id}")
        max_turns = int(job["maxTurns"])
        state = "active" if job["status"] == "running" else job["status"]
        click.echo(f"Job {job_id} is {state}")
        click.echo(f"Turn: {job['turns']}/{max_turns}")

        def show(item: dict[str, Any]) -> int | None:
            outcome = _monitor_line(item.get("event") or {}, max_turns)
            if outcome is None:
                return None
            line, code = outcome
            click.echo(line)
            return code

        code = follow(client, job_id, show, on_reconnect=lambda note: click.echo(f"… {note}", err=True))
    raise SystemExit(code)


def _monitor_line(event: dict[str, Any], max_turns: int) -> tuple[str, int | None] | None:
    kind = event.get("type", "")
    if kind == "job.started.v1":
        return f"▶️  Started on runner {event.get('runnerId')} (attempt {event.get('attempt')})", None
    if kind == "turn.completed.v1":
        names = _tool_names(event)
        usage = event.get("usage", {})
        return (
            f"Turn: {event['turn']}/{max_turns}  tools: {', '.join(names) or '-'}  "
            f"tokens: {usage.get('inputTokens', 0)} in / {usage.get('outputTokens', 0)} out",
            None,
        )
    if kind == "job.completed.v1":
        return (
            f"✅ Job completed after {event.get('turns')} turns: {shorten(str(event.get('summary', '')), 300)}",
            0,
        )
    if kind == "job.failed.v1":
        return f"❌ Job failed: {event.get('message')}", 1
    if kind == "job.cancelled.v1":
        return f"🛑 Job cancelled after {event.get('turns')} turns", 1
    if kind == "job.resumed.v1":
        return (
            f"↪️  Job resumed as job {event.get('newJobId')} from turn {event.get('fromTurn')}; "
            f"follow it with `turnlog monitor {event.get('newJobId')}`",
            1,
        )
    if kind.startswith("checkpoint.deleted."):
        return "🗑️  Job deleted", 1
    return None


def _tool_names(event: dict[str, Any]) -> list[str]:
    content = event.get("assistantContent")
    if not isinstance(content, list):
        return []
    return [str(block.get("name")) for block in content if isinstance(block, dict) and block.get("type") == "tool_use"]


@cli.command()
@click.option("--status", type=click.Choice(_STATUSES), default=None, help="Only jobs with this status.")
@json_option
def checkpoints(status: str | None, as_json: bool) -> None:
    """List checkpoints: job id, status, turns/max, messages, last updated, can resume."""
    with _client() as client:
        params = {"status": status} if status else {}
        document = client.json("GET", "/checkpoints", params=params)
    if as_json:
        _emit_json(document)
        return
    items = document["checkpoints"]
    if not items:
        click.echo("No checkpoints found.")
        return
    click.echo(f"Found {len(items)} checkpoint(s):\n")
    console().print(checkpoint_table(items, format_time))


@cli.command()
@click.argument("job_id")
@click.option("--verbose", "-v", is_flag=True, help="Add the full message history.")
@json_option
def inspect(job_id: str, verbose: bool, as_json: bool) -> None:
    """Show one checkpoint; --verbose adds the message history, one block per message."""
    with _client() as client:
        checkpoint = client.json("GET", f"/checkpoints/{job_id}")
        conversation = client.json("GET", f"/checkpoints/{job_id}/messages") if verbose else None
    if as_json:
        _emit_json({**checkpoint, "conversation": conversation} if conversation else checkpoint)
        return
    click.echo(checkpoint_block(checkpoint))
    if conversation is not None:
        click.echo()
        click.echo(message_history(conversation))


@cli.command()
@click.argument("job_id")
@click.option("--from-turn", type=int, default=None, help="Fork from this turn instead of the last completed one.")
@click.option("--note", default=None, help="A user instruction added before the next turn.")
@click.option("--callback", default=None, help="URL that receives a POST when the new job ends.")
@json_option
def resume(job_id: str, from_turn: int | None, note: str | None, callback: str | None, as_json: bool) -> None:
    """Resume a job as a new job that continues its history."""
    body: dict[str, Any] = {}
    if from_turn is not None:
        body["fromTurn"] = from_turn
    if note is not None:
        body["note"] = note
    if callback is not None:
        body["callback"] = {"url": callback}
    with _client() as client:
        document = client.json("POST", f"/checkpoints/{job_id}/resume", json=body)
    if as_json:
        _emit_json(document)
        return
    click.echo("🎉 Job resumed successfully!")
    click.echo(f"   Original Job ID: {document['originalJobId']}")
    click.echo(f"   New Job ID: {document['newJobId']}")
    click.echo(f"   Resuming from turn: {document['resumingFromTurn']}")


@cli.command()
@click.argument("job_id")
@json_option
def cancel(job_id: str, as_json: bool) -> None:
    """Stop a queued or running job after its current turn."""
    with _client() as client:
        document = client.json("POST", f"/jobs/{job_id}/cancel")
    if as_json:
        _emit_json(document)
        return
    if document["status"] == "cancelled":
        click.echo(f"🛑 Job {job_id} cancelled")
    else:
        click.echo(f"🛑 Job {job_id} will stop after its current turn")


@cli.command()
@click.argument("job_id")
@json_option
def delete(job_id: str, as_json: bool) -> None:
    """Delete a job's checkpoint and history."""
    with _client() as client:
        document = client.json("DELETE", f"/checkpoints/{job_id}")
    if as_json:
        _emit_json(document)
        return
    click.echo(f"🗑️  Deleted job {job_id}")


@cli.command()
@click.argument("job_id")
def diff(job_id: str) -> None:
    """Print the job's change to the repository so far as a unified diff."""
    with _client() as client:
        response = client.request("GET", f"/jobs/{job_id}/diff")
        if response.status_code >= 400:
            client.json("GET", f"/jobs/{job_id}/diff")
    click.echo(response.text, nl=False)


@cli.command()
@click.argument("job_id")
@json_option
def events(job_id: str, as_json: bool) -> None:
    """Print the job's raw event log in order: sequence, time, type, summary."""
    collected: list[dict[str, Any]] = []
    with _client() as client:
        after = 0
        while True:
            page = client.json("GET", f"/jobs/{job_id}/events", params={"after": after, "limit": 1000})
            collected.extend(page["events"])
            if len(page["events"]) < 1000:
                break
            after = page["next"]
    if as_json:
        _emit_json({"jobId": job_id, "events": collected})
        return
    for item in collected:
        event = item.get("event") or {}
        click.echo(f"{item['sequence']:>8}  {item['time'][:23]:<23}  {item.get('type') or '?':<26}  {_summary(event)}")


def _summary(event: dict[str, Any]) -> str:
    kind = event.get("type", "")
    if kind == "job.requested.v1":
        origin = f" (resume of {event['resumeOf']} at turn {event.get('fromTurn')})" if event.get("resumeOf") else ""
        return f"{event.get('repository')}: {shorten(str(event.get('task', '')), 60)}{origin}"
    if kind == "turn.completed.v1":
        return f"turn {event.get('turn')}: {', '.join(_tool_names(event)) or event.get('stopReason')}"
    if kind == "job.failed.v1":
        return f"{event.get('kind')}: {shorten(str(event.get('message', '')), 80)}"
    if kind == "job.started.v1":
        return f"runner {event.get('runnerId')}, attempt {event.get('attempt')}"
    if kind == "job.resumed.v1":
        return f"resumed as {event.get('newJobId')} from turn {event.get('fromTurn')}"
    if kind == "job.completed.v1":
        return shorten(str(event.get("summary", "")), 80)
    if kind == "job.cancel_requested.v1":
        return f"cancel requested ({event.get('reason') or 'user'})"
    if kind == "job.cancelled.v1":
        return f"cancelled after turn {event.get('turns')}"
    if kind.startswith("checkpoint.deleted."):
        return f"deleted by {event.get('requestedBy') or 'a user'}: {event.get('reason') or '-'}"
    if kind.startswith("callback."):
        outcome = "delivered" if kind.startswith("callback.delivered") else "gave up"
        detail = event.get("status") or event.get("lastError") or ""
        return f"callback {outcome} to {event.get('url')} after {event.get('attempts')} attempt(s) {detail}".rstrip()
    if kind.startswith("autoresume.decided"):
        target = f" as {event['newJobId']}" if event.get("newJobId") else ""
        return f"auto-resume {event.get('decision')}{target}: {shorten(str(event.get('reason', '')), 70)}"
    return ""


class _client:
    def __enter__(self) -> ApiClient:
        self._client = ApiClient()
        return self._client

    def __exit__(self, *_: object) -> None:
        self._client.close()


def _announce(message: str) -> None:
    # Flush each line so a supervisor or a pipe sees start-up and shutdown as they happen.
    click.echo(message, err=False)
    sys.stdout.flush()


def _configure_logging() -> None:
    level = os.environ.get("TURNLOG_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("nats", "httpx", "httpx2", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


cli.add_command(cleanup)


_ENV_PREFIXES = {
    "Settings": "TURNLOG_",
    "AlertSettings": "TURNLOG_ALERT_",
    "SimulatorSettings": "TURNLOG_SIM_",
    "ModelSettings": "",
}
"""The environment prefix of each settings class, to name the variable behind a bad value."""


def setting_error(exc: pydantic.ValidationError) -> str:
    """Describe the first invalid setting by its environment variable, its value and the rule it broke."""
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = f"{_ENV_PREFIXES.get(exc.title, 'TURNLOG_')}{field}".upper()
    reason = str(first["msg"]).removeprefix("Value error, ")
    return f"invalid {variable} {first.get('input')!r}: {reason}; fix or unset the variable"


def main() -> None:
    """Run the CLI, printing a CliError as one sentence on stderr with its exit code."""
    try:
        cli(standalone_mode=False)
    except CliError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(exc.exit_code) from None
    except pydantic.ValidationError as exc:
        click.echo(f"error: {setting_error(exc)}", err=True)
        raise SystemExit(2) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


from services.cli.replay import projections, replay  # noqa: E402

cli.add_command(replay)
cli.add_command(projections)
