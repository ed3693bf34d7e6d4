"""Secrets in the routing config: where they are, how they are stored, and how they are shown.

A secret is the value of a model entry's credential field: `api_key`, and any other key (at any depth
of the entry: `headers`, `options`, LiteLLM's `litellm_params`) whose name says it is one
(`Authorization`, `x-api-key`, `aws_secret_access_key`, `vertex_credentials`, `client_secret`,
`*_token`, `password`, `cookie` ...).

A secret is written either as a reference, `${ENV_VAR}` (or `os.environ/ENV_VAR`, or `Bearer ${VAR}`),
which is not itself secret and is stored and shown as written; or as the value itself, which is
write-only: stored encrypted (Fernet, with SWITCHYARD_CONFIG_SECRET_KEY) as `encrypted:<token>`,
and shown as MASK. Sending MASK back keeps the value stored for that entry, so a document read with
GET can be edited and PUT back as it is. Without the key a literal value is refused (from the admin
API) or kept in memory only and stored as MASK (from a --config file, which stays the source of it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from gateway.live.document import NAME_KEY, entry_keys, keyed

MASK = "********"
ENCRYPTED = "encrypted:"
# Where a document came from: the admin API (strict), a --config file, or the database.
Source = Literal["api", "file", "stored"]

_SECRET_NAME = re.compile(
    r"(^|[_-])(api[_-]?key|key|secret|token|password|passwd|credentials?|auth)$"
    r"|authorization$|^cookie$|^set-cookie$",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"(?:[A-Za-z]+ )?\$\{[A-Za-z_][A-Za-z0-9_]*\}|os\.environ/[A-Za-z_][A-Za-z0-9_]*")

_NO_KEY = "set SWITCHYARD_CONFIG_SECRET_KEY on the gateway to store it encrypted, or write it as ${ENV_VAR}"


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def is_reference(value: Any) -> bool:
    """`${VAR}`, `os.environ/VAR` or `<Scheme> ${VAR}`: names a secret without holding it."""
    return isinstance(value, str) and bool(_REFERENCE.fullmatch(value))


def secret_paths(document: Mapping[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every secret in `document`'s model entries; path as in the document
    (`("models", 2, "headers", "Authorization")`)."""
    for section in NAME_KEY:
        entries = document.get(section)
        if isinstance(entries, list):
            for i, entry in enumerate(entries):
                if isinstance(entry, dict):
                    yield from _in_entry(entry, (section, i))


def _in_entry(node: Mapping[str, Any], path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    for key, value in node.items():
        where = (*path, key)
        if isinstance(key, str) and is_secret_name(key):
            yield where, value
        elif isinstance(value, dict):
            yield from _in_entry(value, where)


def _masked(value: Any) -> Any:
    return value if is_reference(value) else MASK


def _mask_subtree(value: Any, key: Any) -> Any:
    if isinstance(key, str) and is_secret_name(key):
        return _masked(value)
    if isinstance(value, dict):
        return {k: _mask_subtree(v, k) for k, v in value.items()}
    return value


def mask(document: Mapping[str, Any]) -> dict[str, Any]:
    """`document` as it may be shown: every secret that is not a reference replaced by MASK."""
    out = dict(document)
    for section in NAME_KEY:
        entries = out.get(section)
        if isinstance(entries, list):
            out[section] = [_mask_subtree(e, None) for e in entries]
    return out


def mask_at(path: tuple[str, ...], value: Any) -> Any:
    """A value of a document at `path` (a diff's: model entries by key) as it may be shown."""
    if len(path) >= 2 and path[0] in NAME_KEY:
        return _mask_subtree(value, path[-1] if len(path) > 2 else None)
    return value


class SecretBox:
    """Encrypts and decrypts secret values with the configured key (none: it can do neither)."""

    def __init__(self, key: SecretStr | str | None) -> None:
        raw = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._fernet = None if not raw else Fernet(_fernet_key(raw))

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def encrypt(self, value: str) -> str:
        assert self._fernet is not None
        return ENCRYPTED + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, stored: str) -> str | None:
        """The value `stored` holds; None when it cannot be read with this key."""
        if self._fernet is None:
            return None
        try:
            return self._fernet.decrypt(stored.removeprefix(ENCRYPTED).encode()).decode()
        except (InvalidToken, ValueError):
            return None


def _fernet_key(raw: str) -> bytes:
    """A Fernet key as given, or one derived from any other string (a long random one)."""
    try:
        if len(base64.urlsafe_b64decode(raw.encode())) == 32:
            return raw.encode()
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest())


@dataclass
class Resolved:
    """A document's secrets worked out: `stored` to write to the database, `plain` (values
    decrypted) to build the config from, and what was wrong."""

    stored: dict[str, Any]
    plain: dict[str, Any]
    errors: list[dict[str, str]] = field(default_factory=list)


def loc(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def resolve(
    document: Mapping[str, Any],
    box: SecretBox,
    previous: Mapping[str, Any] | None = None,
    source: Source = "api",
) -> Resolved:
    """Check every secret of `document` and work out how it is stored; `previous` (the stored
    document it replaces) supplies the values that MASK keeps, and the encryption of values that
    did not change (so an unchanged document stores identically and has the same hash)."""
    stored = _copy(document)
    plain = _copy(document)
    errors: list[dict[str, str]] = []
    before = _previous_entries(document, previous)
    for path, value in secret_paths(document):
        where = loc(path)
        old = _lookup(before, path)

        def fail(message: str, where: str = where) -> None:
            errors.append({"loc": where, "message": message})

        if not isinstance(value, str):
            fail("a credential must be a string: a ${ENV_VAR} reference or the secret itself")
        elif is_reference(value):
            continue
        elif value == MASK:
            if not isinstance(old, str) or old == MASK:
                fail(
                    f"{MASK} keeps the stored secret, but this entry has none stored: "
                    "send the secret or a ${ENV_VAR} reference"
                )
                continue
            _set(stored, path, old)
            if old.startswith(ENCRYPTED):
                readable = box.decrypt(old)
                if readable is None:
                    fail(_unreadable(box))
                    continue
                _set(plain, path, readable)
            else:
                _set(plain, path, old)
        elif value.startswith(ENCRYPTED):
            if source == "api":
                fail("encrypted values are written by the gateway: send the secret itself")
                continue
            readable = box.decrypt(value)
            if readable is None:
                fail(_unreadable(box))
                continue
            _set(plain, path, readable)
        elif not box.available:
            if source == "api":
                fail(f"a secret written as a value needs a key to be stored: {_NO_KEY}")
            else:
                _set(stored, path, MASK)
        elif isinstance(old, str) and old.startswith(ENCRYPTED) and box.decrypt(old) == value:
            _set(stored, path, old)
        else:
            _set(stored, path, box.encrypt(value))
    return Resolved(stored, plain, errors)


def _unreadable(box: SecretBox) -> str:
    if not box.available:
        return "stored encrypted: set SWITCHYARD_CONFIG_SECRET_KEY to the key it was written with"
    return "cannot be decrypted with SWITCHYARD_CONFIG_SECRET_KEY (was the key changed?)"


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _previous_entries(
    document: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> dict[tuple[str, int], Any]:
    """(section, index in `document`) -> the entry of `previous` with the same key."""
    out: dict[tuple[str, int], Any] = {}
    if not previous:
        return out
    for section in NAME_KEY:
        old = keyed(previous.get(section), section)
        for i, key in enumerate(entry_keys(document.get(section), section)):
            if key is not None and key in old:
                out[(section, i)] = old[key]
    return out


def _lookup(before: dict[tuple[str, int], Any], path: tuple[Any, ...]) -> Any:
    node = before.get((path[0], path[1]))
    for part in path[2:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
