"""Ids the gateway gives the responses and items it makes (`resp_...`, `msg_...`, `fc_...`)."""

from __future__ import annotations

import os


def new_id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"
