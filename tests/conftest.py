"""Session-wide test setup: the same offline environment every entry point prepares."""

from gateway.offline import prepare_offline_env

prepare_offline_env()
