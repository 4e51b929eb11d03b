from django.contrib import admin

from curation.models import BatchCase, DatasetBatch, DatasetVersion


class BatchCaseInline(admin.TabularInline):
    model = BatchCase
    extra = 0
    raw_id_fields = ["case"]


@admin.register(DatasetBatch)
class DatasetBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "status", "created_by", "approved_by", "approved_at"]
    list_filter = ["status"]
    readonly_fields = ["status", "approved_by", "approved_at"]
    inlines = [BatchCaseInline]


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "batch", "status", "train_rows", "eval_rows", "content_hash", "built_at"]
    readonly_fields = [f.name for f in DatasetVersion._meta.fields]
