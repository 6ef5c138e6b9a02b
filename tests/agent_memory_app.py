"""What the neo4j-agent-memory tests and their producer process share: its settings
for the test Neo4j (from NEO4J_*), and an embedder that needs no model."""

from __future__ import annotations

import os
from typing import Any, Literal

from neo4j_agent_memory import MemorySettings

DIMENSIONS = 4


class FakeEmbedder:
    """neo4j-agent-memory's `Embedder` protocol, with a fixed vector for every text."""

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    async def embed(self, text: str) -> list[float]:
        return [0.5] * DIMENSIONS

    async def embed_batch(self, texts: list[str]) -> list[list[float]]:
        return [[0.5] * DIMENSIONS for _ in texts]


def fake_embedder() -> Any:
    return FakeEmbedder()


def agent_memory_settings(
    write_mode: Literal["sync", "buffered"], env: dict[str, str] | None = None
) -> MemorySettings:
    """Its settings for the Neo4j that `env` (default: this process's) names."""
    env = dict(os.environ) if env is None else env
    return MemorySettings(
        neo4j={
            "uri": env["NEO4J_URI"],
            "username": env.get("NEO4J_USERNAME", "neo4j"),
            "password": env["NEO4J_PASSWORD"],
        },
        memory={"write_mode": write_mode},
        extraction={"extractor_type": "none"},
    )
