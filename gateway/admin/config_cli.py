"""`switchyard config get | apply FILE | validate FILE | history | rollback N`: the live routing config
of a running gateway, through its admin API (/admin/config) with the master key.

The gateway is --url, else $SWITCHYARD_URL, else the host and port the settings name; the master key
is $SWITCHYARD_MASTER_KEY (or the config file's). `get` prints the document as YAML (secrets masked)
headed by a `# config version N` line; `apply` sends that version as If-Match, so a change made by
someone else in between is refused (409) rather than overwritten. Anything for a person goes to
stderr; failures are one line each, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config import entry_settings

_VERSION_LINE = re.compile(r"^#\s*config version (\d+)\s*$", re.MULTILINE)
TIMEOUT_S = 30.0


def add_config_commands(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="read and change a running gateway's routing config")
    sub = config.add_subparsers(dest="config_command", required=True)
    p = sub.add_parser("get", help="print the config as YAML (secrets masked)")
    p.add_argument("--version", type=int, dest="at", help="an older version (default: the newest)")
    p.add_argument("--json", action="store_true", help="the API's JSON answer instead")
    _common(p)
    p.set_defaults(func=_failing_in_one_line(cmd_get))
    p = sub.add_parser("apply", help="make FILE (YAML or JSON) the config; it is validated first")
    p.add_argument("file", type=Path)
    p.add_argument("--if-match", help="the version FILE was based on (default: its `# config version` line)")
    p.add_argument("--comment", help="why (kept with the version)")
    _common(p)
    p.set_defaults(func=_failing_in_one_line(cmd_apply))
    p = sub.add_parser("validate", help="check FILE without applying it: every error, and the diff")
    p.add_argument("file", type=Path)
    _common(p)
    p.set_defaults(func=_failing_in_one_line(cmd_validate))
    p = sub.add_parser("history", help="the versions, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    _common(p)
    p.set_defaults(func=_failing_in_one_line(cmd_history))
    p = sub.add_parser("rollback", help="make version N's document the newest version again")
    p.add_argument("n", type=int)
    p.add_argument("--comment", help="why (kept with the version)")
    _common(p)
    p.set_defaults(func=_failing_in_one_line(cmd_rollback))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="the gateway (default: $SWITCHYARD_URL, else the settings' host and port)")
    p.add_argument("--config", type=Path, help="YAML config whose settings (port, master key) to use")


class _Failed(Exception):
    """Said to the user in one line; exit 2."""


# -- commands -------------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    path = "/admin/config" if args.at is None else f"/admin/config/versions/{args.at}"
    body = _call(args, "GET", path)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    print(f"# config version {body['version']}")
    print(yaml.safe_dump(body["document"], sort_keys=False, allow_unicode=True), end="")
    said = f"version {body['version']} by {body.get('author')}"
    if body.get("running_version") is not None and body["running_version"] != body["version"]:
        said += f" (this replica still runs {body['running_version']})"
    print(said, file=sys.stderr)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    text, document = _read(args.file)
    if_match = args.if_match
    if if_match is None:
        m = _VERSION_LINE.search(text)
        if_match = m.group(1) if m else "*"
    params = {"author": _author(), **({"comment": args.comment} if args.comment else {})}
    body = _call(
        args, "PUT", "/admin/config", json_body=document, headers={"if-match": if_match}, params=params
    )
    if not body["created"]:
        print(f"unchanged: {args.file} is version {body['version']} already", file=sys.stderr)
        return 0
    print(f"applied: version {body['version']} ({len(body['diff'])} changes)", file=sys.stderr)
    _print_diff(body["diff"])
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    _, document = _read(args.file)
    body = _call(args, "POST", "/admin/config/validate", json_body=document)
    if not body["valid"]:
        _print_errors(body["errors"])
        return 2
    print(f"valid: {len(body['diff'])} changes against version {body['base_version']}", file=sys.stderr)
    _print_diff(body["diff"])
    if body.get("preview") is not None:
        print(yaml.safe_dump({"preview": body["preview"]}, sort_keys=False), end="", file=sys.stderr)
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    body = _call(args, "GET", "/admin/config/versions", params={"limit": max(1, min(args.limit, 1000))})
    if args.json:
        for row in body["data"]:
            print(json.dumps(row))
        return 0
    rows = [
        [str(r["version"]), (r["created_at"] or "-")[:19], r["author"] or "-", r["comment"] or ""]
        for r in body["data"]
    ]
    header = ["version", "created_at", "author", "comment"]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    params = {"author": _author(), **({"comment": args.comment} if args.comment else {})}
    body = _call(args, "POST", f"/admin/config/rollback/{args.n}", params=params)
    if not body["created"]:
        print(f"unchanged: version {args.n}'s document is the newest already", file=sys.stderr)
        return 0
    print(f"rolled back: version {body['version']} has version {args.n}'s document", file=sys.stderr)
    _print_diff(body["diff"])
    return 0


# -- plumbing -------------------------------------------------------------------------------------


def _failing_in_one_line(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except _Failed as exc:
            print(f"switchyard: {exc}", file=sys.stderr)
            return 2

    return run


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    settings = entry_settings(os.environ, **({} if args.config is None else {"config": args.config}))
    url = args.url or os.environ.get("SWITCHYARD_URL")
    if not url:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{host}:{settings.port}"
    key = settings.master_key.get_secret_value() if settings.master_key else None
    return url.rstrip("/"), key


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    url, key = _target(args)
    if key is None:
        raise _Failed("set SWITCHYARD_MASTER_KEY: the config API takes the master key")
    sent = {"authorization": f"Bearer {key}", **(headers or {})}
    try:
        r = httpx.request(method, url + path, json=json_body, headers=sent, params=params, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot reach the gateway at {url}: {exc}") from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("errors"):
            _print_errors(error["errors"])
            raise _Failed(f"rejected: {len(error['errors'])} errors, nothing changed")
        message = error.get("message") if isinstance(error, dict) else r.text[:200]
        raise _Failed(f"{message} (HTTP {r.status_code})")
    return body


def _read(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise _Failed(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise _Failed(f"{path}: invalid YAML{at}") from None
    if not isinstance(document, dict):
        raise _Failed(f"{path}: expected a mapping with models: and routes:")
    return text, document


def _author() -> str:
    try:
        return f"cli:{os.getlogin()}"
    except OSError:
        return "cli"


def _print_errors(errors: list[dict[str, str]]) -> None:
    for e in errors:
        print(f"switchyard: {e['loc'] + ': ' if e['loc'] else ''}{e['message']}", file=sys.stderr)


def _print_diff(changes: list[dict[str, Any]]) -> None:
    sign = {"added": "+", "removed": "-", "changed": "~"}
    for c in changes:
        if c["op"] == "changed":
            detail = f"{json.dumps(c.get('old'))} -> {json.dumps(c.get('new'))}"
        else:
            detail = json.dumps(c.get("new") if c["op"] == "added" else c.get("old"))
        print(f"  {sign[c['op']]} {c['path']}: {detail}", file=sys.stderr)
