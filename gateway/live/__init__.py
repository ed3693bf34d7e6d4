"""The running config: one immutable snapshot of everything derived from it, swapped atomically."""

# On every /v1 response: the config version the request ran on (gateway/pipeline/outcome.py).
CONFIG_VERSION_HEADER = "x-switchyard-config-version"
