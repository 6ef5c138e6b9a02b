"""Which entries a drainer runs: signed by a key it holds, and queries it allows.

Checked after decoding and before anything reaches Neo4j. A refused entry is
dead-lettered with the reason (`signature`, `not-allowed`, `unknown-query`), counted
in `cypherstream_entries_rejected_total`, and the stream goes on.
"""

from __future__ import annotations

from cypherstream.shared.entry import WriteEntry
from cypherstream.shared.errors import BadSignature, QueryNotAllowed
from cypherstream.shared.queries import QueryBook
from cypherstream.shared.signing import Signer


class Admission:
    """The drainer's rules for running an entry (`--queries`, `--allow-raw-cypher`, keys)."""

    def __init__(self, signer: Signer | None, queries: QueryBook, allow_raw_cypher: bool) -> None:
        self.signer = signer
        """The keys this drainer verifies entries with (None: it verifies nothing)."""
        self._queries = queries
        self._allow_raw = allow_raw_cypher

    def admit(self, session_id: str, entry: WriteEntry) -> WriteEntry:
        """The entry ready to run (named queries resolved to Cypher), or raise `RejectedEntry`."""
        if self.signer is not None and not self.signer.verify(session_id, entry):
            state = "unsigned" if entry.signature is None else "signed with no key it accepts"
            raise BadSignature(
                f"entry {entry.entry_id} of session {session_id!r} is {state}, or was changed "
                "or moved from another session after signing; it was not run. Producers need "
                "CYPHERSTREAM_SIGNING_KEYS set to a key this drainer accepts."
            )
        if entry.name is not None:
            return entry._replace(query=self._queries.cypher(entry.name))
        if not self._allow_raw:
            raise QueryNotAllowed(
                "this drainer runs named queries only (--allow-raw-cypher false): submit "
                "with `client.buffered.submit_named(name, params)` and a name from its "
                "--queries file"
            )
        return entry
