"""glee-serve: GLEE behind an API (model, export, service)."""
