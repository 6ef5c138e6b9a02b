"""The `drainer` command: a thin layer over `Drainer` and `DrainerSettings`.

Every option can also come from the environment (``DRAINER_*``, ``REDIS_URL``,
``NEO4J_*``, ``CYPHERSTREAM_*``); a flag given on the command line wins.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import typing
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from cypherstream.drainer.backlog import Status, snapshot
from cypherstream.drainer.dlq import DeadLetter, list_dead_letters, purge, replay
from cypherstream.drainer.logs import setup_logging
from cypherstream.drainer.report import print_status
from cypherstream.drainer.settings import DrainerSettings
from cypherstream.drainer.worker import Drainer
from cypherstream.shared.connection import RedisClient, open_redis
from cypherstream.shared.errors import ConfigurationError, CypherstreamError
from cypherstream.shared.keys import Keyspace

log = logging.getLogger(__name__)

T = TypeVar("T")


def build_settings(options: dict[str, object]) -> DrainerSettings:
    """Settings from the environment, overridden by the flags that were given."""
    # Values of any setting's type: the settings model validates them.
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    nested: dict[str, dict[str, object]] = {"redis": {}, "neo4j": {}, "streams": {}}
    for key in list(given):
        group, _, name = key.partition("__")
        if name:
            nested[group][name] = given.pop(key)
    settings = DrainerSettings(**given)
    for group, values in nested.items():
        if values:
            flagged = getattr(settings, group).model_copy()
            for name, value in values.items():
                setattr(flagged, name, value)  # validated, as from the environment
            setattr(settings, group, flagged)
    return settings


Command = Callable[..., None]
Decorator = Callable[[Command], Command]

#: Settings that never become flags: secrets stay out of process listings.
_SECRETS = frozenset({"password", "signing_keys"})
#: Nested settings groups: the prefix of their flags and of their options' names.
_GROUPS = {"redis": "redis-", "neo4j": "neo4j-", "streams": ""}


def settings_options(
    model: type[BaseSettings], *, group: str = "", only: frozenset[str] | None = None
) -> list[Decorator]:
    """A click option per field of `model` (a settings group when `group` is set), its
    help the field's description with its environment variable and default: the flags
    are the settings, so a new setting is a flag without another line here."""
    env_prefix = str(model.model_config.get("env_prefix", ""))
    options: list[Decorator] = []
    for name, field in model.model_fields.items():
        nested = _GROUPS.get(name)
        if nested is not None and not group:
            options += settings_options(_group_model(field), group=name, only=only)
            continue
        if name in _SECRETS or (only is not None and f"{group}.{name}" not in only):
            continue
        flag = "--" + (_GROUPS.get(group, "") + name).replace("_", "-")
        dest = f"{group}__{name}" if group else name
        options.append(
            click.option(
                flag, dest, **_option_kind(field), help=_help(field, env_prefix + name.upper())
            )
        )
    return options


def _group_model(field: FieldInfo) -> type[BaseSettings]:
    model = field.annotation
    assert isinstance(model, type) and issubclass(model, BaseSettings)
    return model


def _option_kind(field: FieldInfo) -> dict[str, Any]:
    """How click reads the value: a flag for settings that default to off."""
    kinds = {
        t for t in typing.get_args(field.annotation) or (field.annotation,) if t is not type(None)
    }
    if kinds == {bool}:
        return {"is_flag": True, "default": None} if field.default is False else {"type": bool}
    if kinds == {Path}:
        return {"type": click.Path(dir_okay=False, path_type=Path)}
    for kind in (int, float):
        if kinds == {kind}:
            return {"type": kind}
    return {"type": str}


def _help(field: FieldInfo, variable: str) -> str:
    default = "" if field.default in (None, PydanticUndefined) else f", default {field.default}"
    text = field.description or ""
    return f"{text} [env {variable}{default}]".strip()


def _with_options(options: list[Decorator]) -> Decorator:
    def apply(func: Command) -> Command:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


#: Where the queue is: what the commands that only talk to Redis take.
_CONNECTION = frozenset({"redis.url", "redis.cluster", "redis.username", "redis.ssl_ca_certs",
                         "streams.key_prefix", "streams.partitions"})  # fmt: skip


@click.group()
def main() -> None:
    """cypherstream drainer: applies queued writes from Redis Streams to Neo4j."""


@main.command()
@_with_options(settings_options(DrainerSettings))
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
    envvar="DRAINER_LOG_FORMAT", help="[env DRAINER_LOG_FORMAT]",
)  # fmt: skip
@click.option(
    "--log-level", default="INFO", show_default=True, envvar="DRAINER_LOG_LEVEL",
    help="[env DRAINER_LOG_LEVEL]",
)  # fmt: skip
def run(log_format: str, log_level: str, **options: object) -> None:
    """Drain queued writes until SIGTERM or SIGINT (a second signal exits at once).

    Secrets come only from the environment, never from flags, so they stay out of
    process listings: NEO4J_PASSWORD, REDIS_PASSWORD and CYPHERSTREAM_SIGNING_KEYS
    (comma-separated; the drainer runs only entries signed with one of them).
    """
    setup_logging(log_format, log_level)
    settings = _settings_or_exit(options)
    _run_async(serve(Drainer(settings)), failure_code=1)


async def serve(drainer: Drainer) -> None:
    """Run `drainer` as this process's whole job, until signalled.

    Once it is ready, whatever start-up made (modules, connections, settings) is
    moved out of the garbage collector's sight (`gc.freeze`): a full collection then
    walks only what draining made, instead of pausing the drain for 30-50 ms.
    """
    running = asyncio.ensure_future(drainer.run_until_signalled())
    ready = asyncio.ensure_future(drainer.ready.wait())
    await asyncio.wait([running, ready], return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if drainer.ready.is_set():
        gc.freeze()
    await running


async def _with_redis(
    options: dict[str, object], action: Callable[[RedisClient, Keyspace], Awaitable[T]]
) -> T:
    settings = _settings_or_exit(options)
    keys = settings.streams.keyspace()
    redis = await open_redis(settings.redis, keys)
    try:
        return await action(redis, keys)
    finally:
        await redis.aclose()


def _settings_or_exit(options: dict[str, object]) -> DrainerSettings:
    """The settings, or one line naming the first bad one and exit 2."""
    try:
        return build_settings(options)
    except ValidationError as exc:
        _fail(_invalid_setting(exc), 2)
    except CypherstreamError as exc:
        _fail(str(exc), 2)


def _invalid_setting(exc: ValidationError) -> str:
    """`VARIABLE: what pydantic says`, for the first error (its flag reads the same)."""
    error = exc.errors()[0]
    path = [str(part) for part in error["loc"]]
    groups = {name: _group_model(DrainerSettings.model_fields[name]) for name in _GROUPS}
    # A group read from the environment fails on its own (`title` names its model); one
    # given as a flag fails inside DrainerSettings (its name leads the location).
    by_title = {model.__name__: model for model in groups.values()}
    model = by_title.get(exc.title) or groups.get(path[0] if len(path) > 1 else "")
    prefix = (model or DrainerSettings).model_config.get("env_prefix", "")
    variable = f"{prefix}{path[-1].upper()}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"invalid setting {variable}: {error['msg']}{more}"


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"drainer: {' '.join(message.split())}", err=True)  # one line
    sys.exit(code)


def _run_async(coro: Coroutine[object, object, T], *, failure_code: int = 2) -> T:
    """Run a command: a `ConfigurationError` exits 2, any other failure `failure_code`,
    each as one line on stderr (the traceback only at --log-level DEBUG)."""
    try:
        return asyncio.run(coro)
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except CypherstreamError as exc:
        _fail(str(exc), failure_code)
    except Exception as exc:
        log.debug("the command failed", exc_info=True)
        _fail(f"unexpected {type(exc).__name__}: {exc} (--log-level DEBUG shows where)", 1)


@main.command()
@_with_options(settings_options(DrainerSettings, only=_CONNECTION))
@click.option("--top", default=10, show_default=True, help="sessions listed, longest-waiting first")
@click.option("--json", "as_json", is_flag=True, help="print the stable JSON form (docs/status.md)")
def status(top: int, as_json: bool, **options: object) -> None:
    """Live drainers, backlog, the longest-waiting sessions and dead letters.

    Exits 1 when entries are queued but no drainer is alive to apply them.
    """

    async def action(redis: RedisClient, keys: Keyspace) -> Status:
        return await snapshot(redis, keys, top=top)

    current: Status = _run_async(_with_redis(options, action))
    if as_json:
        click.echo(json.dumps(current.to_json(), indent=2))
    else:
        print_status(current)
    if current.entries and not current.live_drainers:
        click.echo("no drainer is alive but writes are queued: start `drainer run`", err=True)
        sys.exit(1)


@main.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters (writes that failed for good)."""


@dlq.command("list")
@_with_options(settings_options(DrainerSettings, only=_CONNECTION))
@click.option("--session", help="only this session's dead letters")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def dlq_list(session: str | None, as_json: bool, **options: object) -> None:
    """Show dead letters, oldest first."""

    async def action(redis: RedisClient, keys: Keyspace) -> list[DeadLetter]:
        return await list_dead_letters(redis, keys, session_id=session)

    letters = _run_async(_with_redis(options, action))
    for letter in letters:
        row = letter.summary()
        if as_json:
            click.echo(json.dumps(row))
        else:
            click.echo(
                f"{row['id']}  {row['session']}  {row['reason']}  {row['code']}  "
                f"{row['query'][:60]!r}"
            )
    if not as_json:
        click.echo(f"{len(letters)} dead letters")


@dlq.command("replay")
@_with_options(settings_options(DrainerSettings, only=_CONNECTION))
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="replay every dead letter")
@click.option("--session", help="replay this session's dead letters")
def dlq_replay(
    ids: tuple[str, ...], replay_all: bool, session: str | None, **options: object
) -> None:
    """Queue dead letters again, in their original order, to their original sessions."""
    if not ids and not replay_all and session is None:
        raise click.UsageError("name dead letter IDs, or give --session or --all")

    signer = build_settings(options).streams.signer()

    async def action(redis: RedisClient, keys: Keyspace) -> int:
        letters = await list_dead_letters(redis, keys, session_id=session, ids=list(ids))
        return await replay(redis, keys, letters, signer)

    click.echo(f"replayed {_run_async(_with_redis(options, action))} dead letters")


@dlq.command("purge")
@_with_options(settings_options(DrainerSettings, only=_CONNECTION))
@click.option("--session", help="only this session's dead letters")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def dlq_purge(session: str | None, yes: bool, **options: object) -> None:
    """Delete dead letters for good."""
    scope = f"dead letters of session {session}" if session else "ALL dead letters"
    if not yes:
        click.confirm(f"Delete {scope}?", abort=True)

    async def action(redis: RedisClient, keys: Keyspace) -> int:
        return await purge(redis, keys, await list_dead_letters(redis, keys, session_id=session))

    click.echo(f"purged {_run_async(_with_redis(options, action))} dead letters")
