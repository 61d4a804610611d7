"""The API's wire models, shared by api/ (server) and client/ (SDK). Pure pydantic, no I/O."""
