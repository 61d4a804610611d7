"""Pure domain model: names, sizes, resources, lifecycle. No I/O here."""
