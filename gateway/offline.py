"""Process-wide environment for running with no network, applied once by each entry point."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def litellm_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def prepare_offline_env() -> None:
    """tiktoken cannot download its BPE files here, but litellm's wheel ships them under the cache
    names tiktoken looks for; and litellm must never fetch its price map at import."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    base = litellm_dir()
    if base is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(base / "litellm_core_utils" / "tokenizers"))
