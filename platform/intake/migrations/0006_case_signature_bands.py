"""A case stores its MinHash signature and LSH band keys (`intake.neardup`): triage shows likely duplicates."""

import django.db.models.deletion
from django.db import migrations, models


def sign_existing(apps, schema_editor):
    # The signature is pure code over the text: compute it for the cases already stored, so an old case
    # is found as the likely original of a new one.
    from intake import neardup

    case_model = apps.get_model("intake", "FeedbackCase")
    band_model = apps.get_model("intake", "CaseBand")
    for case in case_model.objects.only("pk", "prompt", "expected_output").iterator(chunk_size=1000):
        sig = neardup.signature(f"{case.prompt}\n{case.expected_output}")
        case_model.objects.filter(pk=case.pk).update(signature=neardup.signature_to_bytes(sig))
        band_model.objects.bulk_create(band_model(case_id=case.pk, key=key) for key in sorted(set(neardup.band_keys(sig))))


class Migration(migrations.Migration):
    dependencies = [("intake", "0005_case_personal_data")]

    operations = [
        migrations.AddField(
            model_name="feedbackcase",
            name="signature",
            field=models.BinaryField(blank=True, db_default=b"", default=b"", editable=False),
        ),
        migrations.CreateModel(
            name="CaseBand",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.BigIntegerField()),
                ("case", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="bands",
                                           to="intake.feedbackcase")),
            ],
            options={
                "indexes": [models.Index(fields=["key"], name="caseband_key")],
                "constraints": [models.UniqueConstraint(fields=("case", "key"), name="caseband_once_per_case")],
            },
        ),
        migrations.RunPython(sign_existing, migrations.RunPython.noop),
    ]
