"""How TLS settings become driver options (pure: no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from neo4j import TrustCustomCAs

from cypherstream.shared.errors import ConfigurationError
from cypherstream.shared.settings import Neo4jSettings


def test_a_custom_ca_turns_encryption_on_and_trusts_only_that_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    options = Neo4jSettings(uri="neo4j://db:7687", trusted_ca=ca).driver_options()

    assert options["encrypted"] is True
    assert isinstance(options["trusted_certificates"], TrustCustomCAs)


@pytest.mark.parametrize("uri", ["neo4j+s://db:7687", "bolt+ssc://db:7687"])
def test_a_custom_ca_with_a_scheme_that_picks_its_own_is_refused(uri: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"neo4j:// or bolt://"):
        Neo4jSettings(uri=uri, trusted_ca=tmp_path / "ca.pem").driver_options()


def test_secure_schemes_need_no_options() -> None:
    assert "encrypted" not in Neo4jSettings(uri="neo4j+s://db:7687").driver_options()


def test_passwords_do_not_show_in_the_settings_repr() -> None:
    settings = Neo4jSettings(password="hunter2-neo4j")  # type: ignore[arg-type]

    assert "hunter2-neo4j" not in repr(settings) and "hunter2-neo4j" not in str(settings)
