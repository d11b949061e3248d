"""The `turnlog replay` and `turnlog projections` commands: state rebuilt from the event log."""

from __future__ import annotations

import json
from typing import Any

import click

from services.cli.client import ApiClient
from services.cli.render import checkpoint_block, message_history

__all__ = ["projections", "replay"]

REBUILD_TIMEOUT_SECONDS = 600.0
"""How long `projections rebuild` waits for the API; a rebuild reads every event of the stream."""


@click.command()
@click.argument("job_id")
@click.option("--to-turn", type=click.IntRange(min=0), default=None, help="Stop after this turn (default: the last).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with the API's fields.")
def replay(job_id: str, to_turn: int | None, as_json: bool) -> None:
    """Rebuild the job's state at a turn from its events alone: checkpoint, conversation, workspace diff."""
    params = {"toTurn": to_turn} if to_turn is not None else {}
    client = ApiClient()
    try:
        document = client.json("GET", f"/jobs/{job_id}/replay", params=params)
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    click.echo(render_replay(document))


def render_replay(document: dict[str, Any]) -> str:
    """Render a replay as `turnlog replay` shows it."""
    turn, last = document["toTurn"], document["lastTurn"]
    lines = [
        f"🔁 Replay of job {document['jobId']} after turn {turn} (last recorded turn: {last}), rebuilt from its events"
    ]
    if document.get("turnJobId") and document["turnJobId"] != document["jobId"]:
        lines.append(f"   Turn {turn} belongs to job {document['turnJobId']}, which this job was resumed from")
    if document.get("checkpoint"):
        lines.append("")
        lines.append(f"   The checkpoint below is the job as it stood after turn {turn}, not as it is now.")
        lines.append(checkpoint_block(document["checkpoint"]))
    lines.append("")
    lines.append(message_history(document["conversation"]))
    lines.append("")
    lines.append(f"🗂️  Workspace after turn {turn}:")
    files = document.get("files") or []
    if not files:
        lines.append("   no files changed")
    for item in files:
        state = "deleted" if item["deleted"] else "changed"
        lines.append(f"   {item['path']} ({state} in turn {item['turn']})")
    if document.get("diffError"):
        lines.append(f"   diff unavailable: {document['diffError']}")
    elif document.get("diff"):
        lines.append("")
        lines.append(str(document["diff"]).rstrip("\n"))
    return "\n".join(lines)


@click.group()
def projections() -> None:
    """Manage the checkpoint projection built from the event log."""


@projections.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document with the API's fields.")
def rebuild(as_json: bool) -> None:
    """Rebuild every checkpoint from the event log into a new generation and switch to it."""
    client = ApiClient(timeout=REBUILD_TIMEOUT_SECONDS)
    try:
        document = client.json("POST", "/projections/rebuild")
    finally:
        client.close()
    if as_json:
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"🔄 Rebuilt {document['jobs']} checkpoint(s) from {document['events']} event(s) in {document['seconds']:.2f}s"
    )
    click.echo(f"   Active generation: {document['generation']} (was {document['previousGeneration']})")
