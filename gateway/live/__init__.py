"""The running config: one immutable snapshot of everything derived from it, swapped atomically."""
