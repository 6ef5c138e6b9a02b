"""The Lua scripts both sides run; each touches the keys of one hash slot only."""

from __future__ import annotations

from importlib import resources
from typing import Any

_NAMES = ("submit", "read", "takeover", "ack", "flush_ack", "release", "renew", "heartbeat", "live")


class Scripts:
    """Scripts registered on one Redis client (EVALSHA, loaded again on NOSCRIPT)."""

    def __init__(self, redis: Any) -> None:
        folder = resources.files("shared") / "lua"
        for name in _NAMES:
            source = (folder / f"{name}.lua").read_text()
            setattr(self, name, redis.register_script(source))

    submit: Any
    read: Any
    takeover: Any
    ack: Any
    flush_ack: Any
    release: Any
    renew: Any
    heartbeat: Any
    live: Any
