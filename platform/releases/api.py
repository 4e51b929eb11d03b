"""The public releases API: list and read published releases and their files (no login needed)."""

from django.db.models import QuerySet
from rest_framework import generics, permissions
from rest_framework.pagination import CursorPagination

from releases.models import Release
from releases.selectors import release_queryset_public
from releases.serializers import ReleaseSerializer


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50


class ReleaseList(generics.ListAPIView):
    """Published releases, newest first, each with its files (size, sha256, download URL)."""

    serializer_class = ReleaseSerializer
    pagination_class = NewestFirst
    permission_classes = [permissions.AllowAny]

    def get_queryset(self) -> QuerySet[Release]:
        return release_queryset_public().prefetch_related("files")


class ReleaseDetail(generics.RetrieveAPIView):
    """One published release by tag."""

    serializer_class = ReleaseSerializer
    permission_classes = [permissions.AllowAny]
    lookup_field = "tag"

    def get_queryset(self) -> QuerySet[Release]:
        return release_queryset_public().prefetch_related("files")
