"""Spend accounting: one record per request, written in batches off the request path."""
