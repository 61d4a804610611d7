"""Disk images, storage pools and snapshots."""
