"""Templates: one artifact that becomes a container or a VM."""
