"""The database: schema (models), engines (engine) and migrations (migrate)."""
