"""Typed SDK for the Corral API, over the local Unix socket or HTTP with a token."""

from corral.client.client import ApiError, CorralClient

__all__ = ["ApiError", "CorralClient"]
