"""Integrations with the tools users already run: frameworks and experiment trackers."""
