"""The results database: models, engine, upserts and migrations."""
