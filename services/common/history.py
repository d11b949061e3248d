"""Loading a job's history, and its whole resume lineage, from the event store."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.checkpoint import Checkpoint
from contracts.events import CheckpointDeleted, FileChange, JobRequested, JobStarted, TurnCompleted
from services.common.conversation import Conversation, ConversationBuilder
from services.common.fold import fold
from services.common.store import EventStore, StoredEvent

__all__ = ["HistoryError", "JobHistory", "Lineage", "load_job", "load_lineage"]


class HistoryError(Exception):
    """A job's history cannot be used: it is missing, or an event in it cannot be decoded."""

    def __init__(self, job_id: str, detail: str) -> None:
        self.job_id = job_id
        self.detail = detail
        super().__init__(f"job {job_id}: {detail}")


@dataclass(slots=True)
class JobHistory:
    """One job's own events, decoded, with the checkpoint they fold into."""

    job_id: str
    events: list[StoredEvent]
    request: JobRequested
    checkpoint: Checkpoint | None

    @property
    def last_sequence(self) -> int:
        """Return the stream sequence of the job's last event."""
        return self.events[-1].sequence if self.events else 0

    def turns(self) -> list[TurnCompleted]:
        """Return the job's own completed turns in order."""
        return [stored.event for stored in self.events if isinstance(stored.event, TurnCompleted)]

    def starts(self) -> list[JobStarted]:
        """Return every time a runner took the job."""
        return [stored.event for stored in self.events if isinstance(stored.event, JobStarted)]


@dataclass(slots=True)
class Lineage:
    """Everything needed to continue a job: its turns back to the first job of its resume chain."""

    job_id: str
    repository: str
    task: str
    max_turns: int
    base_commit: str | None
    turns: list[TurnCompleted] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)
    forks: list[tuple[str, int]] = field(default_factory=list)
    """(original job id, turn) for every resume in the chain, oldest first."""
    _builder: ConversationBuilder | None = field(default=None, repr=False, compare=False)

    def conversation(self) -> Conversation:
        """Return the repaired model conversation of the lineage, extended with turns added since the last call.

        Turns appended to `turns` are decoded once; any other change to `turns` rebuilds it. The returned
        object is updated in place by later calls.
        """
        builder = self._builder
        stale = builder is None or builder.turns_added > len(self.turns)
        if builder is not None and not stale and builder.turns_added:
            stale = self.turns[builder.turns_added - 1] is not builder.last_record
        if builder is None or stale:
            builder = ConversationBuilder(self.task, self.notes)
            self._builder = builder
        for record in self.turns[builder.turns_added :]:
            builder.add(record)
        return builder.conversation

    def changes(self) -> list[FileChange]:
        """Return every workspace change of the lineage, in the order the turns made them."""
        return [change for turn in self.turns for change in turn.changes]

    @property
    def last_turn(self) -> int:
        """Return the number of the last completed turn, 0 when none."""
        return self.turns[-1].turn if self.turns else 0


async def load_job(store: EventStore, job_id: str) -> JobHistory | None:
    """Read and fold one job's own events; None when the job has no history or was deleted."""
    events = await store.read(job_id)
    if not events or any(isinstance(stored.event, CheckpointDeleted) for stored in events):
        return None
    broken = next((stored for stored in events if stored.event is None), None)
    if broken is not None:
        raise HistoryError(job_id, str(broken.error))
    first = events[0].event
    if not isinstance(first, JobRequested):
        raise HistoryError(job_id, f"history starts with {type(first).__name__} instead of a job request")
    checkpoint = fold([(stored.sequence, stored.event) for stored in events if stored.event is not None])
    return JobHistory(job_id=job_id, events=events, request=first, checkpoint=checkpoint)


async def load_lineage(store: EventStore, job_id: str, *, to_turn: int | None = None) -> Lineage:
    """Rebuild the turns, notes and base commit of a job and of every job it was resumed from."""
    history = await load_job(store, job_id)
    if history is None:
        raise HistoryError(job_id, "no such job")
    return await _lineage_of(store, history, to_turn, depth=0)


async def _lineage_of(store: EventStore, history: JobHistory, to_turn: int | None, *, depth: int) -> Lineage:
    request = history.request
    if depth > 100:
        raise HistoryError(history.job_id, "resume chain longer than 100 jobs")

    if request.resume_of is not None:
        parent = await load_job(store, request.resume_of)
        if parent is None:
            raise HistoryError(history.job_id, f"resumed from job {request.resume_of}, whose history is gone")
        lineage = await _lineage_of(store, parent, request.from_turn, depth=depth + 1)
        lineage.job_id = history.job_id
        lineage.max_turns = request.max_turns
        lineage.forks.append((request.resume_of, request.from_turn or 0))
        if request.note:
            lineage.notes[request.from_turn or 0] = request.note
    else:
        starts = history.starts()
        lineage = Lineage(
            job_id=history.job_id,
            repository=request.repository,
            task=request.task,
            max_turns=request.max_turns,
            base_commit=starts[0].base_commit if starts else None,
        )
        if request.note:
            lineage.notes[0] = request.note

    floor = lineage.last_turn
    for turn in history.turns():
        if turn.turn > floor and (to_turn is None or turn.turn <= to_turn):
            lineage.turns.append(turn)
    return lineage
