"""The echo-key-* faults: an upstream that quotes the credentials it received in its error messages.

  echo-key-400 / echo-key-401 / echo-key-500   that status, the message quoting the credentials
  echo-key-midstream                           a 200 stream: some content, then an error event quoting them

Careless upstreams (and proxies in front of them) do this: print the request headers they got, or the
key they refused. The message carries both shapes, so a test catches either leaking through a gateway.
"""

from __future__ import annotations

from collections.abc import Mapping

ECHO_STATUS = {"echo-key-400": 400, "echo-key-401": 401, "echo-key-500": 500}
ECHO_MIDSTREAM = "echo-key-midstream"
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def echoed_credentials(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str:
    """An error message quoting the credentials of a request: the headers as a dict, and the bare key."""
    seen = {name: headers[name] for name in _CREDENTIAL_HEADERS if headers.get(name)}
    if query and query.get("key"):
        seen["key"] = query["key"]
    bare = next((value.removeprefix("Bearer ") for value in seen.values()), "")
    return f"request rejected; received headers {seen!r}; the key {bare} is not valid here"
