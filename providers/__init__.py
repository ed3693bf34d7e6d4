"""Upstream adapters: one module per wire protocol, all behind `providers.base.Provider`."""
