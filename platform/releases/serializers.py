from django.urls import reverse
from rest_framework import serializers

from releases.models import Release, ReleaseFile


class ReleaseFileSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ReleaseFile
        fields = ["name", "size", "sha256", "download_count", "download_url"]

    def get_download_url(self, obj: ReleaseFile) -> str:
        url = reverse("releases:file", args=[obj.release.tag, obj.name])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class ReleaseSerializer(serializers.ModelSerializer):
    base_checkpoint = serializers.CharField(source="run.base_name")
    method = serializers.CharField(source="run.method")
    dataset = serializers.CharField(source="run.dataset_version.batch.name")
    dataset_content_hash = serializers.CharField(source="run.dataset_version.content_hash")
    case_ids = serializers.SerializerMethodField()
    files = ReleaseFileSerializer(many=True, read_only=True)

    class Meta:
        model = Release
        fields = [
            "tag",
            "published_at",
            "base_checkpoint",
            "method",
            "dataset",
            "dataset_content_hash",
            "case_ids",
            "sha256sums",
            "model_card",
            "files",
        ]

    def get_case_ids(self, obj: Release) -> list[int]:
        return list(obj.run.dataset_version.batch.items.order_by("case_id").values_list("case_id", flat=True))
