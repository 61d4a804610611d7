"""Builders for the templates Corral ships with (made on the host, nothing downloaded)."""
