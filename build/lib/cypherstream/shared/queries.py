"""Named queries: Cypher that drainers know by name, so entries need not carry it.

A drainer started with `--queries queries.yaml` and `--allow-raw-cypher false` runs
only the queries named there (plus the built-in ones of the typed memory records),
so whoever can write to the streams can no longer choose the Cypher. The file is a
mapping of names to Cypher:

    add_note: |
      MERGE (n:Note {id: $id}) SET n.text = $text
    link_note: MATCH (n:Note {id: $id}), (m:Message {id: $message_id}) MERGE (n)-[:ON]->(m)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from cypherstream.shared.errors import ConfigurationError, UnknownQuery

BUILTIN_PREFIX = "cypherstream."
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

# The typed memory records (producer/records.py, docs/memory-graph.md). Each MERGEs on
# the record's id, so a record written twice is stored once.
BUILTIN: dict[str, str] = {
    "cypherstream.message": (
        "MERGE (s:Session {id: $session_id}) "
        "MERGE (m:Message {id: $id}) "
        "ON CREATE SET m.session_id = $session_id, m.role = $role, m.content = $content, "
        "m.created_at = $created_at, m.metadata = $metadata, m.stored_at = datetime() "
        "MERGE (s)-[:HAS_MESSAGE]->(m)"
    ),
    "cypherstream.tool_call": (
        "MERGE (s:Session {id: $session_id}) "
        "MERGE (t:ToolCall {id: $id}) "
        "ON CREATE SET t.session_id = $session_id, t.name = $name, t.arguments = $arguments, "
        "t.result = $result, t.status = $status, t.error = $error, "
        "t.duration_ms = $duration_ms, t.created_at = $created_at, t.stored_at = datetime() "
        "MERGE (s)-[:HAS_TOOL_CALL]->(t) "
        "WITH t OPTIONAL MATCH (m:Message {id: $message_id}) "
        "FOREACH (_ IN CASE WHEN m IS NULL THEN [] ELSE [1] END | MERGE (m)-[:CALLED]->(t))"
    ),
    "cypherstream.reasoning_step": (
        "MERGE (s:Session {id: $session_id}) "
        "MERGE (r:ReasoningStep {id: $id}) "
        "ON CREATE SET r.session_id = $session_id, r.step = $step, r.content = $content, "
        "r.created_at = $created_at, r.stored_at = datetime() "
        "MERGE (s)-[:HAS_STEP]->(r) "
        "WITH r OPTIONAL MATCH (m:Message {id: $message_id}) "
        "FOREACH (_ IN CASE WHEN m IS NULL THEN [] ELSE [1] END | MERGE (r)-[:ABOUT]->(m))"
    ),
    "cypherstream.mention": (
        "MATCH (m:Message {id: $message_id}) "
        "MERGE (e:Entity {name: $entity}) "
        "ON CREATE SET e.type = $entity_type "
        "MERGE (m)-[:MENTIONS]->(e)"
    ),
}


class QueryBook:
    """Names to Cypher: the built-in queries and those of an optional YAML file."""

    def __init__(self, queries: Mapping[str, str] | None = None) -> None:
        self._queries = dict(BUILTIN)
        for name, text in (queries or {}).items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigurationError(
                    f"query name {name!r} is not valid: use 1-128 letters, digits and . _ : -"
                )
            if name.startswith(BUILTIN_PREFIX):
                raise ConfigurationError(
                    f"query name {name!r}: names starting with {BUILTIN_PREFIX!r} are reserved"
                )
            if not isinstance(text, str) or not text.strip():
                raise ConfigurationError(f"query {name!r} must be a non-empty string of Cypher")
            self._queries[name] = text

    @classmethod
    def load(cls, path: Path | str | None) -> QueryBook:
        """The built-in queries plus those of the YAML file at `path` (if any)."""
        if path is None:
            return cls()
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigurationError(f"cannot read the query file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise ConfigurationError(
                f"the query file {path} is not valid YAML{at}: "
                f"{getattr(exc, 'problem', None) or exc}. Fix it, or point --queries elsewhere."
            ) from exc
        if not isinstance(data, dict):
            raise ConfigurationError(
                f"the query file {path} must be a mapping of names to Cypher, got "
                f"{type(data).__name__}"
            )
        return cls(data)

    def __contains__(self, name: object) -> bool:
        return name in self._queries

    def __len__(self) -> int:
        return len(self._queries)

    def cypher(self, name: str) -> str:
        """The Cypher of query `name`; raises `UnknownQuery` when there is none."""
        try:
            return self._queries[name]
        except KeyError:
            raise UnknownQuery(
                f"no query is named {name!r}; the drainer knows {len(self)} "
                "(the built-in ones and its --queries file)"
            ) from None
