"""How many entries a drain's read asks for: `--batch-size`, or fewer where entries are
large, so the entries a drainer holds stay bounded in bytes as well as in count.

A drainer holds up to two reads per session it drains (the batch applied and the one
read ahead). With `--batch-size` 500, small writes (a few hundred bytes) make reads of
100-200 kB; 384-float embedding writes (4.2 kB) made reads of 2 MB, and a drainer
draining a backlog of them grew past 1 GB. The budget learns the size of entries from
what its worker reads, for every session alike.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Bytes an entry is assumed to take until the worker's first read lands: its first
#: reads ask for `read_bytes` / 2 KiB entries (256 of the default 512 KiB), so even the
#: wave of reads of a drainer starting on a backlog stays bounded.
FIRST_GUESS_BYTES = 2048
#: Weight of each later read's mean entry size in the running estimate.
_WEIGHT = 0.25
#: Entries of a read whose sizes make its mean, evenly spaced: enough for an estimate,
#: without a walk over every write of every read.
_SAMPLE = 16


class ReadBudget:
    """Entries per read from a byte budget and the entry sizes read so far."""

    def __init__(self, batch_size: int, read_bytes: int) -> None:
        self._batch_size = batch_size
        self._read_bytes = read_bytes
        self._entry_bytes = float(FIRST_GUESS_BYTES)
        self._learned = False

    def count(self) -> int:
        """Entries the next read asks for: at least 1, at most `batch_size`."""
        return max(1, min(self._batch_size, int(self._read_bytes / self._entry_bytes)))

    def observe(self, entries: Sequence[tuple[str, Sequence[bytes] | None]]) -> None:
        """Learn from a read's entries (fields as read; None for a deleted one)."""
        step = max(1, len(entries) // _SAMPLE)
        sizes = [sum(map(len, fields)) for _, fields in entries[::step] if fields]
        if sizes:
            mean = sum(sizes) / len(sizes)
            weight = _WEIGHT if self._learned else 1.0  # the guess gives way at once
            self._entry_bytes += weight * (mean - self._entry_bytes)
            self._learned = True
