"""A trigram index for the triage text search, on PostgreSQL only.

`search_text LIKE '%term%'` cannot use a B-tree; pg_trgm's GIN index serves it,
so searching 100,000 cases stays an index scan. SQLite (the embedded default,
for small installs) scans, which is fine at its scale.
"""

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS case_search_trgm ON intake_feedbackcase USING gin (search_text gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS case_search_trgm"]


def _run(statements: list[str]):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("intake", "0001_initial")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
