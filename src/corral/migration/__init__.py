"""Moving instances between hosts: the pieces the migration service composes.

``transfer``: block-level pre-copy and delta of disk images; ``frames``: the wire format of
disk chunks; ``files``: the instance's files around its disk (the tar of its directory,
snapshot files, where an arriving file may go, free space); ``peer``: the TLS client one
corrald uses to drive another.
"""
