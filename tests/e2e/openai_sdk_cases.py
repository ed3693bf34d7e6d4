"""What the `openai` SDK end-to-end files share: the canned prompt, a per-test tag, the request-id shape."""

from __future__ import annotations

import re
import uuid

HELLO = [{"role": "user", "content": "Say hello to the gateway"}]
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")


def marker() -> str:
    return "e2e-" + uuid.uuid4().hex[:12]
