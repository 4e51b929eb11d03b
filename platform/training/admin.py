from django.contrib import admin

from training.models import Evaluation, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset_version", "method", "status", "step", "total_steps", "created_at"]
    list_filter = ["status", "method"]
    readonly_fields = ["status", "attempt", "step", "total_steps", "last_loss", "started_at", "finished_at"]


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "status", "finished_at"]
    readonly_fields = ["status", "override_by"]
