from django.contrib import admin
from django.http import HttpRequest

from curation.models import BatchCase, BenchmarkSet, DatasetBatch, DatasetVersion


class BatchCaseInline(admin.TabularInline):
    """Read-only: a batch's cases change through the batch pages (curation.services), which refuse
    to change an approved batch."""

    model = BatchCase
    extra = 0
    can_delete = False
    readonly_fields = ["case", "weight", "position"]

    def has_add_permission(self, request: HttpRequest, obj: DatasetBatch | None = None) -> bool:
        return False


@admin.register(DatasetBatch)
class DatasetBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "status", "created_by", "approved_by", "approved_at"]
    list_filter = ["status"]
    readonly_fields = ["name", "status", "period_start", "period_end", "created_by", "approved_by", "approved_at"]
    inlines = [BatchCaseInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches are created on the batch pages or by the monthly schedule


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "batch", "status", "train_rows", "eval_rows", "content_hash", "built_at"]
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]


@admin.register(BenchmarkSet)
class BenchmarkSetAdmin(admin.ModelAdmin):
    """Read-only: sets are registered on /batches/benchmarks/ or by `manage.py register_benchmark`."""

    list_display = ["name", "item_count", "active", "created_by", "created_at"]
    readonly_fields = [f.name for f in BenchmarkSet._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
