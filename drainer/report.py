"""`drainer status` for people: tables rendered with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cypherstream.drainer.backlog import Status
from cypherstream.shared.memory import WARN_RATIO


def print_status(status: Status, console: Console | None = None) -> None:
    out = console or Console()
    drainers = Table(title=f"Drainers ({status.live_drainers} alive)")
    columns = ("id", "host", "pid", "streams owned", "last heartbeat", "alive", "entry versions")
    for column in columns:
        drainers.add_column(column)
    for d in status.drainers:
        drainers.add_row(
            d.id, d.host, str(d.pid), str(d.streams_owned),
            f"{d.last_heartbeat_age_seconds:.1f}s ago", "yes" if d.alive else "NO",
            ",".join(map(str, d.entry_versions)),
        )  # fmt: skip
    out.print(drainers)
    out.print(
        f"Backlog: {status.entries} entries in {status.ready_sessions} sessions; "
        f"oldest waiting {status.oldest_pending_age_seconds:.1f}s. "
        f"Dead letters: {status.dead_letters}."
    )
    share = status.batched_share
    if share is not None:
        out.print(
            f"Batched: {share:.0%} of the writes live drainers ran shared an UNWIND statement"
            + ("" if share >= 0.5 else " (see cypherstream_unbatched_writes_total for why)")
            + "."
        )
    memory = status.redis_memory
    warn = memory.ratio >= WARN_RATIO
    note = " Producers wait for room while it is full; drainers free it." if warn else ""
    out.print(f"{memory.describe()}.{note}", style="bold red" if warn else None)
    if status.sessions:
        sessions = Table(title="Longest-waiting sessions")
        for column in ("session", "entries", "waiting", "owner"):
            sessions.add_column(column)
        for s in status.sessions:
            sessions.add_row(s.session, str(s.entries), f"{s.waiting_seconds:.1f}s", s.owner or "-")
        out.print(sessions)
