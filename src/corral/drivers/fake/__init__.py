"""A first-class driver without a hypervisor, for API and cluster tests."""
