"""Moving instances between hosts: the pieces the migration service composes.

``transfer``: block-level pre-copy and delta of disk images; ``frames``: the wire format of
disk chunks; ``peer``: the TLS client one corrald uses to drive another; ``undo``: the undo
stack both sides keep so a failure at any phase rolls back.
"""
