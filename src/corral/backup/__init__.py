"""Backups: a content-addressed chunk store (zstd, sha256 or keyed names, optional AES-GCM)
with one manifest per backup, on a local/NAS directory or S3-compatible object storage.

Pure of Corral's services: it reads and writes image files and a ``Target``; the services
decide where a consistent image comes from (snapshots) and where a restore goes.
"""
