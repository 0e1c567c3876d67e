"""Shared machinery with no use-case knowledge."""
