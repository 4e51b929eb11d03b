"""A post's lease (`claimed_until`) becomes its claim time (`claimed_at`), as every other job has."""

from datetime import timedelta

from django.db import migrations
from django.db.models import F

# The lease every claim took until now: its end, less this, is when it was claimed.
OLD_LEASE = timedelta(minutes=5)


def lease_end_to_claim_time(apps, schema_editor):
    comment = apps.get_model("ghsync", "OutgoingComment")
    comment.objects.filter(claimed_at__isnull=False).update(claimed_at=F("claimed_at") - OLD_LEASE)


def claim_time_to_lease_end(apps, schema_editor):
    comment = apps.get_model("ghsync", "OutgoingComment")
    comment.objects.filter(claimed_at__isnull=False).update(claimed_at=F("claimed_at") + OLD_LEASE)


class Migration(migrations.Migration):
    dependencies = [("ghsync", "0002_delivery_outcomes")]

    operations = [
        migrations.RenameField("outgoingcomment", "claimed_until", "claimed_at"),
        migrations.RunPython(lease_end_to_claim_time, claim_time_to_lease_end),
    ]
