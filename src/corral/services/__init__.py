"""Orchestration: instances, templates, operations, events, host facts."""
