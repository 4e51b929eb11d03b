"""Carry DRF authtoken keys over as hashes, then delete the plaintext keys.

`rest_framework.authtoken` is no longer installed, so its table is read with SQL
and only where an older database has it. Each key keeps working (as its hash) for
API_TOKEN_DAYS from this migration, so scripts keep running while people are told
to make new tokens. The emptied table is left in place: dropping another app's
table from here would leave its migration records lying.
"""

import hashlib
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

AUTHTOKEN_TABLE = "authtoken_token"


def _aware(moment: datetime) -> datetime:
    # Raw SQL skips the backend's conversion: SQLite hands back a naive UTC text timestamp.
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def hash_authtoken_keys(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if AUTHTOKEN_TABLE not in connection.introspection.table_names():
        return
    api_token = apps.get_model("accounts", "ApiToken")
    table = schema_editor.quote_name(AUTHTOKEN_TABLE)
    expires_at = timezone.now() + timedelta(days=settings.API_TOKEN_DAYS)
    created_field = api_token._meta.get_field("created_at")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {table}")
        rows = cursor.fetchall()
        api_token.objects.bulk_create(
            api_token(
                user_id=user_id,
                key_hash=hashlib.sha256(key.encode()).hexdigest(),
                prefix=key[:8],
                created_at=_aware(created_field.to_python(created)),
                expires_at=expires_at,
            )
            for key, user_id, created in rows
        )
        cursor.execute(f"DELETE FROM {table}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_api_tokens_and_login_lockouts"),
    ]

    # Not reversible in substance: the plaintext keys are gone, so going back leaves the hashes alone.
    operations = [migrations.RunPython(hash_authtoken_keys, migrations.RunPython.noop)]
