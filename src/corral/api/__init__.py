"""FastAPI: parse, authenticate, authorize, call a service; nothing else."""
