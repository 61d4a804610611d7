"""corrald: the per-host daemon."""
