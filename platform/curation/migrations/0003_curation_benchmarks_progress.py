"""Benchmark sets registered with the platform (kept out of every train split), and a build's progress."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("curation", "0002_datasetversion_build_recovery"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="datasetversion",
            name="progress",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.CreateModel(
            name="BenchmarkSet",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(max_length=60, unique=True)),
                ("description", models.CharField(blank=True, max_length=300)),
                ("sha256", models.CharField(max_length=64)),
                ("item_count", models.PositiveIntegerField(default=0)),
                ("active", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                 related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.CreateModel(
            name="BenchmarkItem",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("item_id", models.CharField(max_length=200)),
                ("prompt", models.TextField()),
                ("answer", models.TextField(blank=True)),
                ("benchmark", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="items",
                                                to="curation.benchmarkset")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("benchmark", "item_id"),
                                                        name="benchmarkitem_unique_id")],
            },
        ),
    ]
