from django.contrib import admin
from django.http import HttpRequest

from releases.models import Release, ReleaseFile


class ReleaseFileInline(admin.TabularInline):
    model = ReleaseFile
    extra = 0
    can_delete = False
    readonly_fields = ["name", "size", "sha256", "download_count"]

    def has_add_permission(self, request: HttpRequest, obj: Release | None = None) -> bool:
        return False


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    """Read-only: releases are published from a run's publish page (releases.services.release_publish)."""

    list_display = ["tag", "run", "status", "published_by", "published_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Release._meta.fields]
    inlines = [ReleaseFileInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
