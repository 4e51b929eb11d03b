from django.contrib import admin

from releases.models import Release, ReleaseFile


class ReleaseFileInline(admin.TabularInline):
    model = ReleaseFile
    extra = 0
    readonly_fields = ["name", "size", "sha256", "download_count"]


@admin.register(Release)
class ReleaseAdmin(admin.ModelAdmin):
    list_display = ["tag", "run", "status", "published_by", "published_at"]
    readonly_fields = ["status", "published_by", "published_at"]
    inlines = [ReleaseFileInline]
