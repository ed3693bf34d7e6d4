from tests.gateway.db.databases import db_url, engine, pg_database, sqlite_database

__all__ = ["db_url", "engine", "pg_database", "sqlite_database"]
