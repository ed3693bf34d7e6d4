"""Credentials out of text an upstream wrote, before any of it can reach a client.

Upstreams echo what they received in their error messages often enough (a proxy printing the request
headers, a validator quoting the bad key); the gateway relays upstream error text, so every such
message is cleaned here: the deployment's own credentials by value, and anything shaped like a key
by pattern (the gateway may front upstreams whose keys it never saw, e.g. litellm's environment).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from providers.deployment import Deployment

REDACTED = "[REDACTED]"

# `name: value`, `name=value` or JSON/dict pairs whose value is a credential. Credential names take any
# value of 6+ characters; bare `key`/`token`/`secret` also name ordinary things ("key: temperature"), so
# only a long value after them reads as a secret. An already redacted value is matched whole, so that
# `Bearer [REDACTED]` does not lose its scheme word as well.
_SEPARATOR = r"""["']?\s*[:=]\s*["']?(?:(?:bearer|basic|token)\s+)?"""
_CREDENTIAL_NAMES = (
    r"x-goog-api-key|x-api-key|api[-_ ]?key|apikey|(?:proxy-)?authorization|access[-_]?token"
    r"|refresh[-_]?token|auth[-_]?token|client[-_]?secret|secret[-_]?key|password|passwd"
)
_NAMED = re.compile(rf"(?i)(\b(?:{_CREDENTIAL_NAMES}){_SEPARATOR})(?:\[REDACTED\]|[A-Za-z0-9._~+/=\-]{{6,}})")
_LOOSE = re.compile(
    rf"(?i)(\b(?:key|token|secret|sig|signature){_SEPARATOR})(?:\[REDACTED\]|[A-Za-z0-9._~+/=\-]{{16,}})"
)
# Scheme-prefixed tokens wherever they stand (`Bearer abc...`).
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
# Keys recognisable by their vendor prefix alone.
_PREFIXED = re.compile(
    r"""(?x)
    \b(?:sk-[A-Za-z0-9_\-]{12,}            # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), most clones
      |AIza[0-9A-Za-z_\-]{20,}             # Google API keys
      |gsk_[A-Za-z0-9]{20,}                # Groq
      |xai-[A-Za-z0-9]{20,}                # xAI
      |pplx-[A-Za-z0-9]{20,}               # Perplexity
      |hf_[A-Za-z0-9]{20,}                 # Hugging Face
      |nvapi-[A-Za-z0-9_\-]{20,}           # NVIDIA
      |r8_[A-Za-z0-9]{20,}                 # Replicate
      |AKIA[0-9A-Z]{16}                    # AWS access key ids
    )
    """
)
# Header names whose values are credentials, for `credentials()`.
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret|signature|password|cookie")
# Shorter values are too likely to occur in ordinary text to be replaced by value.
_MIN_SECRET = 6


def credentials(deployment: Deployment) -> tuple[str, ...]:
    """The values of a deployment's own credentials: its API key and its secret-looking headers."""
    found: list[str] = []
    if deployment.api_key:
        found.append(deployment.api_key)
    for name, value in deployment.headers.items():
        if _SECRET_HEADER.search(name) and value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token)
    # Longest first, so a key is never half-replaced by a shorter one it contains.
    return tuple(sorted({s for s in found if len(s) >= _MIN_SECRET}, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with `secrets` (by value) and key-shaped substrings replaced by `[REDACTED]`."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _NAMED.sub(lambda m: m.group(1) + REDACTED, text)
    text = _LOOSE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _PREFIXED.sub(REDACTED, text)
