"""A case records the kinds of personal data found in its text (`intake.pii`), so triage can see the flag."""

from django.db import migrations, models


def flag_existing(apps, schema_editor):
    # The detector is pure code: run it over the cases already stored, so old ones are flagged too.
    from intake.pii import find_pii

    case_model = apps.get_model("intake", "FeedbackCase")
    for case in case_model.objects.only("pk", "scenario", "prompt", "bad_output", "expected_output", "extra_examples"):
        extras = [pair.get(key, "") for pair in case.extra_examples or [] for key in ("input", "output")]
        texts = [case.scenario, case.prompt, case.bad_output, case.expected_output, *extras]
        kinds = sorted({finding.kind for text in texts for finding in find_pii(str(text))})
        if kinds:
            case_model.objects.filter(pk=case.pk).update(personal_data=kinds)


class Migration(migrations.Migration):
    dependencies = [("intake", "0004_case_idempotency_key_http_urls")]

    operations = [
        migrations.AddField(model_name="feedbackcase", name="personal_data", field=models.JSONField(blank=True, db_default=[], default=list)),
        migrations.RunPython(flag_existing, migrations.RunPython.noop),
    ]
