"""The routing config's life: seeded, changed, rolled back and reloaded, always validated first.

Three modes, fixed at start:
- "database" (no --config file): the newest version in `config_versions` is the config. The first
  start seeds version 1 from the embedded defaults; the admin API appends versions.
- "file" (--config FILE): the file is the source of truth. Its content is recorded as a version when
  it differs from the newest (so the history shows it), the admin API's writes answer 409, and
  `reload_file` (file watcher, SIGHUP) applies a changed file, or logs why not and keeps running.
- "pinned" (create_app given a config object and no file: tests, embedding): that config runs as
  version 0 and nothing is written.

A database that is unreachable at start is no reason to stay down: the file or the defaults run as
version 0 until `refresh()` (the sync loop calls it) finds the database again.

Every write takes the lock, validates against the newest stored version, appends (the store refuses a
stale `expected` with StaleVersion, and writes the audit row with the masked diff), applies the new
version to the running LiveConfig and then calls the `on_applied` hooks (publishing to the other
replicas). A document that does not validate changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError

from gateway.config import ConfigError, GatewayConfig, _read
from gateway.defaults import default_config
from gateway.live.document import NAME_KEY, config_document, diff
from gateway.live.runtime import LiveConfig
from gateway.live.secrets import MASK, SecretBox, mask, mask_at
from gateway.live.store import ConfigStore, StaleVersion, Version, document_hash
from gateway.live.validate import ConfigIssue, Validation, issue, validate_document
from gateway.settings import Settings

log = logging.getLogger("switchyard.config")

Mode = Literal["database", "file", "pinned"]
OnApplied = Callable[[int], Awaitable[None]]
DEFAULTS_AUTHOR = "defaults"
# Tries of a change made without `expected` that lost a race to another writer.
_RETRIES = 3
# The start-up read of the database gives up after this (then: version 0 until a refresh).
START_TIMEOUT_S = 15.0
# Environment variables the embedded defaults' provider keys are written as.
_PROVIDER_KEYS = {
    "openai_api_key": "OPENAI_API_KEY",
    "anthropic_api_key": "ANTHROPIC_API_KEY",
    "gemini_api_key": "GEMINI_API_KEY",
}


class ConfigRejected(Exception):
    """The document is not a valid config: `errors` lists every problem."""

    def __init__(self, errors: list[ConfigIssue]) -> None:
        super().__init__("; ".join(f"{e['loc']}: {e['message']}" for e in errors[:5]))
        self.errors = errors


class ConfigReadOnly(Exception):
    """This gateway's config is not changed through the API (file or pinned mode)."""


class ConfigNotFound(Exception):
    """No such version, route or model."""


@dataclass(frozen=True)
class Current:
    """A version as shown: `document` masked. `version` 0: not recorded in the database."""

    version: int
    document: dict[str, Any]
    author: str | None = None
    comment: str | None = None
    created_at: Any = None
    hash: str | None = None


@dataclass(frozen=True)
class Applied:
    """The result of a change: `current` the newest version (masked), `created` False when the
    document was the newest one already, `diff` against the version it replaced (masked)."""

    current: Current
    created: bool
    diff: list[dict[str, Any]]


@dataclass
class DryRun:
    """A validation without a change: against `base_version` (the newest), the diff (masked) and,
    when valid, the config it would run (`validation.config`: what a preview works from)."""

    validation: Validation
    base_version: int
    base_config: GatewayConfig
    diff: list[dict[str, Any]] = field(default_factory=list)


def shown(version: Version) -> Current:
    return Current(
        version.version,
        mask(version.document),
        version.author,
        version.comment,
        version.created_at,
        version.hash,
    )


def embedded_defaults(settings: Settings) -> tuple[GatewayConfig, dict[str, Any], dict[str, str]]:
    """The embedded defaults as a config, as a document (provider keys as ${ENV} references, never
    the keys) and the environment those references read (the keys Settings found, under their names)."""
    config = default_config(settings)
    env = {}
    for setting, name in _PROVIDER_KEYS.items():
        value = getattr(settings, setting)
        if value is not None:
            env[name] = value.get_secret_value()
    refs = {value: "${" + name + "}" for name, value in env.items()}
    return config, config_document(config, refs), env


class ConfigService:
    def __init__(
        self,
        store: ConfigStore,
        live: LiveConfig,
        settings: Settings,
        env: Mapping[str, str],
        *,
        mode: Mode = "database",
        file: Path | None = None,
        document: dict[str, Any] | None = None,
    ) -> None:
        """`document`: what runs until the database says otherwise: the document version 1 is
        seeded from (database mode), or the pinned config's. `file`: the --config file (file mode)."""
        if mode == "file" and file is None:
            raise ValueError("file mode needs the file")
        self.store = store
        self.live = live
        self.settings = settings
        self.env = env
        self.mode: Mode = mode
        self.file = file
        self.box = SecretBox(settings.config_secret_key)
        self.on_applied: list[OnApplied] = []
        self._lock = asyncio.Lock()
        # The stored form of what runs while the database has not been read (or is not used).
        self._document = document if document is not None else config_document(live.current.config)
        # The database has not been read yet (unreachable at start): refresh() tries again.
        self._pending = mode != "pinned"
        self._file_digest: str | None = None
        self._file_settings: Any = None
        # A stored version that failed to apply here, so a poll does not log it again and again.
        self._unusable: int | None = None
        # Versions recorded from the file, for the on_applied hooks.
        self._unannounced: list[int] = []

    # -- start and sync ---------------------------------------------------------------------------

    async def start(self, database_reachable: bool = True) -> None:
        """Seed and apply the newest version (database mode), or record and apply the file (file
        mode). With the database unreachable the running config stays as version 0."""
        if self.mode == "pinned":
            return
        if not database_reachable:
            self._defer("the database is unreachable")
            return
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await self._load(initial=True)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            self._defer(f"the database is unreachable ({type(exc).__name__})")
        await self._flush()

    def _defer(self, why: str) -> None:
        self._pending = True
        what = f"the file {self.file}" if self.mode == "file" else "the embedded defaults"
        log.warning("config: %s; running %s as version 0 until it answers", why, what)

    async def refresh(self) -> bool:
        """Apply the newest stored version when it is newer than the running one (database mode);
        finish a start the database was down for. True when a version was applied."""
        if self.mode == "pinned":
            return False
        if self._pending:
            try:
                return await self._load(initial=True)
            finally:
                await self._flush()
        async with self._lock:
            if self.mode == "file":
                return False
            newest = await self.store.current_version()
            if newest is None or newest <= self.live.version or newest == self._unusable:
                return False
            latest = await self.store.latest()
            return latest is not None and self._apply_stored(latest)

    async def reload_file(self) -> bool:
        """Re-read the --config file: a valid, changed file is recorded as a new version (when it
        differs from the newest) and applied; an invalid one is logged in one line and the running
        config kept. True when the running config changed."""
        if self.mode != "file":
            return False
        try:
            async with self._lock:
                return await self._load_file(initial=False)
        except (SQLAlchemyError, OSError, TimeoutError, StaleVersion) as exc:
            log.warning("config: %s not recorded (%s); try again", self.file, type(exc).__name__)
            return False
        finally:
            await self._flush()

    async def _load(self, *, initial: bool, locked: bool = False) -> bool:
        if not locked:
            async with self._lock:
                return await self._load(initial=initial, locked=True)
        if not self._pending:  # another caller finished it while this one waited for the lock
            return False
        if self.mode == "file":
            changed = await self._load_file(initial=initial)
        else:
            latest = await self.store.latest()
            if latest is None:
                seeded = self._validated(self._document, source="file")
                if seeded.stored is None:
                    log.error("config: the embedded defaults do not validate: %s", seeded.summary())
                    return False
                latest = await self.store.seed(seeded.stored, DEFAULTS_AUTHOR)
                log.info("config: seeded version %d from the embedded defaults", latest.version)
            changed = self._apply_stored(latest)
        self._pending = False
        return changed

    async def _load_file(self, *, initial: bool) -> bool:
        """Read, check, record (when the database answers) and apply the file. At start a database
        error propagates (start() defers); on a reload the file is applied all the same and recorded
        by a later refresh()."""
        assert self.file is not None
        try:
            raw = _read(self.file)
        except ConfigError as exc:
            log.error("config: %s; still running version %d", exc, self.live.version)
            return False
        digest = document_hash(raw)
        if digest == self._file_digest and not self._pending:
            return False
        try:
            latest = await self.store.latest()
            reachable = True
        except (SQLAlchemyError, OSError, TimeoutError):
            if initial:
                raise
            latest, reachable = None, False
        checked = self._validated(raw, source="file", previous=latest.document if latest else None)
        if checked.config is None or checked.stored is None:
            log.error(
                "config: %s is invalid, still running version %d: %s",
                self.file,
                self.live.version,
                checked.summary(),
            )
            return False
        if self._file_settings is not None and raw.get("settings") != self._file_settings:
            log.warning("config: %s: changed settings take effect at the next start", self.file)
        self._file_settings = raw.get("settings")
        self._file_digest = digest
        version, created = self.live.version, False
        if reachable:
            version, created = await self._record_file(checked.stored, latest, initial)
        else:
            self._pending = True
            log.warning("config: database unreachable: %s applied, recorded once it answers", self.file)
        self._document = checked.stored
        self.live.apply(checked.config, version)
        self._unusable = None
        if created:
            log.info("config: version %d recorded from %s", version, self.file)
            # Announced once the lock is released (a hook may well lead to a refresh()).
            self._unannounced.append(version)
        return True

    async def _record_file(
        self, stored: dict[str, Any], latest: Version | None, initial: bool
    ) -> tuple[int, bool]:
        """The version `stored` is (appended when the newest differs), and whether it is new."""
        digest = document_hash(stored)
        author = f"file:{self.file}"
        for _ in range(_RETRIES):
            if latest is not None and latest.hash == digest:
                return latest.version, False
            try:
                if latest is None:
                    new = await self.store.seed(stored, author)
                    return new.version, new.author == author and new.hash == digest
                changes = diff(latest.document, stored, mask_at)
                new = await self.store.append(
                    stored,
                    author,
                    "the file at start" if initial else "reloaded from the file",
                    expected=latest.version,
                    action="config.file",
                    detail={"diff": changes},
                )
                return new.version, True
            except StaleVersion:
                latest = await self.store.latest()
        raise StaleVersion(None, latest.version if latest else None)

    def _apply_stored(self, version: Version) -> bool:
        checked = self._validated(version.document, source="stored")
        if checked.config is None:
            if self._unusable != version.version:
                log.error(
                    "config: version %d cannot be applied here, still running version %d: %s",
                    version.version,
                    self.live.version,
                    checked.summary(),
                )
            self._unusable = version.version
            return False
        self._document = version.document
        self.live.apply(checked.config, version.version)
        self._unusable = None
        return True

    def _validated(
        self, document: Any, *, source: Literal["api", "file", "stored"], previous: Any = None
    ) -> Validation:
        return validate_document(document, env=self.env, box=self.box, previous=previous, source=source)

    async def _flush(self) -> None:
        versions, self._unannounced = self._unannounced, []
        for version in versions:
            await self._announce(version)

    async def _announce(self, version: int) -> None:
        for hook in list(self.on_applied):
            try:
                await hook(version)
            except Exception:
                log.exception("config: an on_applied hook failed for version %d", version)

    # -- reading --------------------------------------------------------------------------------------

    async def current(self) -> Current:
        """The newest version, masked (the running document as version 0 where none is stored)."""
        if self.mode != "pinned" and not self._pending:
            latest = await self.store.latest()
            if latest is not None:
                return shown(latest)
        return Current(self.live.version, mask(self._document))

    async def get(self, version: int) -> Current:
        found = await self.store.get(version)
        if found is None:
            raise ConfigNotFound(f"no config version {version}")
        return shown(found)

    async def history(self, limit: int = 100, before: int | None = None) -> list[Current]:
        return [shown(v) for v in await self.store.history(limit, before)]

    async def validate(self, document: Any) -> DryRun:
        """Check `document` against the newest version without changing anything."""
        base = await self._base()
        previous = base.document if base else self._document
        checked = self._validated(document, source="api", previous=previous)
        proposed = checked.stored if checked.stored is not None else document
        changes = diff(previous, proposed, mask_at) if isinstance(proposed, dict) else []
        return DryRun(checked, base.version if base else self.live.version, self.live.current.config, changes)

    async def _base(self) -> Version | None:
        if self.mode == "pinned" or self._pending:
            return None
        return await self.store.latest()

    # -- changes ----------------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.mode == "file":
            raise ConfigReadOnly(
                f"this gateway runs the config file {self.file} (file mode): edit the file instead; "
                "it is reloaded when it changes and on SIGHUP"
            )
        if self.mode == "pinned":
            raise ConfigReadOnly("this gateway runs a config fixed when it was started")

    async def apply(
        self, document: Any, author: str, comment: str | None = None, expected: int | None = None
    ) -> Applied:
        """Make `document` the newest version and run it. `expected`: the version it was based on
        (StaleVersion when that is not the newest); ConfigRejected lists every problem."""
        return await self._change(lambda _: document, author, comment, expected)

    async def patch_route(
        self,
        name: str,
        entry: dict[str, Any] | None,
        author: str,
        comment: str | None = None,
        expected: int | None = None,
    ) -> Applied:
        """Create or replace the route `name` (None: remove it)."""

        def edit(document: dict[str, Any]) -> dict[str, Any]:
            routes = dict(document.get("routes") or {})
            if entry is None:
                if name not in routes:
                    raise ConfigNotFound(f"no route {name!r}")
                del routes[name]
            else:
                routes[name] = entry
            return {**document, "routes": routes}

        return await self._change(edit, author, comment or _said("route", name, entry), expected)

    async def patch_model(
        self,
        name: str,
        entry: dict[str, Any] | list[dict[str, Any]] | None,
        author: str,
        comment: str | None = None,
        expected: int | None = None,
    ) -> Applied:
        """Create or replace the deployments named `name` (several: a list; None: remove them).
        A secret sent as MASK keeps the one stored for the deployment of that name (or id)."""
        given = [] if entry is None else entry if isinstance(entry, list) else [entry]
        errors = []
        for i, e in enumerate(given):
            where = f"{i}.name" if isinstance(entry, list) else "name"
            if not isinstance(e, dict):
                errors.append(issue(where.removesuffix(".name"), "expected a model entry (a mapping)"))
            elif e.get("name", name) != name:
                errors.append(issue(where, f"is {e.get('name')!r}, but the path names {name!r}"))
        if errors:
            raise ConfigRejected(errors)
        replacement = [{**e, "name": name} for e in given]

        def edit(document: dict[str, Any]) -> dict[str, Any]:
            models = list(document.get("models") or [])
            at = [
                i for i, m in enumerate(models) if isinstance(m, dict) and m.get(NAME_KEY["models"]) == name
            ]
            if entry is None and not at:
                raise ConfigNotFound(f"no model {name!r}")
            kept = [m for i, m in enumerate(models) if i not in at]
            first = at[0] if at else len(models)
            return {**document, "models": kept[:first] + replacement + kept[first:]}

        return await self._change(edit, author, comment or _said("model", name, entry), expected)

    async def rollback(
        self, n: int, author: str, comment: str | None = None, expected: int | None = None
    ) -> Applied:
        """Append a new version with version `n`'s document, and run it."""
        self._writable()
        target = await self.store.get(n)
        if target is None:
            raise ConfigNotFound(f"no config version {n}")
        return await self._change(
            lambda _: target.document,
            author,
            comment or f"rollback to version {n}",
            expected,
            source="stored",
            action="config.rollback",
            extra={"rollback_to": n},
        )

    async def _change(
        self,
        edit: Callable[[dict[str, Any]], Any],
        author: str,
        comment: str | None,
        expected: int | None,
        *,
        source: Literal["api", "stored"] = "api",
        action: str = "config.apply",
        extra: dict[str, Any] | None = None,
    ) -> Applied:
        self._writable()
        async with self._lock:
            if self._pending:
                await self._load(initial=True, locked=True)
            for attempt in range(_RETRIES):
                latest = await self.store.latest()
                base = latest.version if latest else None
                if expected is not None and base != expected:
                    raise StaleVersion(expected, base)
                previous = latest.document if latest else self._document
                # Edits start from what a client would see (secrets masked): MASK keeps them.
                document = edit(mask(previous))
                checked = self._validated(document, source=source, previous=previous)
                if checked.config is None or checked.stored is None:
                    raise ConfigRejected(checked.errors)
                if latest is not None and latest.hash == document_hash(checked.stored):
                    return Applied(shown(latest), False, [])
                changes = diff(previous, checked.stored, mask_at)
                try:
                    new = await self.store.append(
                        checked.stored,
                        author,
                        comment,
                        expected=base,
                        action=action,
                        detail={"diff": changes, **(extra or {})},
                    )
                except StaleVersion:
                    if expected is not None or attempt == _RETRIES - 1:
                        raise
                    continue
                self._document = new.document
                if new.version > self.live.version:
                    self.live.apply(checked.config, new.version)
                log.info("config: version %d written by %s (%d changes)", new.version, author, len(changes))
                break
        await self._announce(new.version)
        return Applied(shown(new), True, changes)


def _said(kind: str, name: str, entry: Any) -> str:
    return f"{'remove' if entry is None else 'set'} {kind} {name}"


__all__ = [
    "MASK",
    "Applied",
    "ConfigNotFound",
    "ConfigReadOnly",
    "ConfigRejected",
    "ConfigService",
    "Current",
    "DryRun",
    "StaleVersion",
    "embedded_defaults",
]
