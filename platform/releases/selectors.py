"""Every read of releases and their files that a view, the API or another app needs."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import F, QuerySet

from accounts.models import User
from curation.models import DatasetBatch, DatasetVersion
from intake.models import FeedbackCase
from releases.models import Release, ReleaseFile, ReleaseStatus

VIEW_ALL_PERMISSION = "releases.view_release"


def release_queryset_public() -> QuerySet[Release]:
    return (
        Release.objects.filter(status=ReleaseStatus.PUBLISHED)
        .select_related("run__dataset_version__batch", "published_by")
        .order_by("-published_at", "-id")
    )


def release_get_visible(*, tag: str, user: User | AnonymousUser) -> Release | None:
    """A published release for anyone; maintainers also see ones that failed or were withdrawn."""
    qs = Release.objects.select_related("run__dataset_version__batch", "published_by").filter(tag=tag)
    if not (user.is_authenticated and user.has_perm(VIEW_ALL_PERMISSION)):
        qs = qs.filter(status=ReleaseStatus.PUBLISHED)
    return qs.first()


def release_for_run(*, run_id: int) -> Release | None:
    return Release.objects.filter(run_id=run_id).first()


def release_abspath(*, release: Release) -> Path:
    if not release.path:
        raise ValueError(f"Release {release.tag} has no files yet.")
    return Path(settings.ARTIFACT_ROOT) / release.path


def release_file_get_public(*, tag: str, name: str) -> ReleaseFile | None:
    """A downloadable file: only of a published release, and only one the release recorded."""
    if "\x00" in name or "\x00" in tag:
        # No recorded name holds a NUL, and PostgreSQL refuses one in a query (a 500, not a 404).
        return None
    return (
        ReleaseFile.objects.select_related("release")
        .filter(release__tag=tag, release__status=ReleaseStatus.PUBLISHED, name=name)
        .first()
    )


def release_file_abspath(*, file: ReleaseFile) -> Path:
    root = release_abspath(release=file.release).resolve()
    path = (root / file.name).resolve()
    # Names come from the database, never from the URL; this guards against a bad row all the same.
    if not path.is_relative_to(root):
        raise ValueError(f"{file.name} is outside release {file.release.tag}.")
    return path


def release_files(*, release: Release) -> QuerySet[ReleaseFile]:
    return ReleaseFile.objects.filter(release=release).order_by("name")


def _withdrawn_before_build(release: Release) -> list[int]:
    # A dataset build leaves out the cases withdrawn by then and lists them in its manifest.
    manifest = DatasetVersion.objects.filter(runs__release=release).values_list("manifest", flat=True).first()
    return list((manifest or {}).get("withdrawn_cases", []))


def release_cases(*, release: Release) -> QuerySet[FeedbackCase]:
    """The cases a release addresses: those of the batch its run trained on, less any withdrawn before the
    dataset was built (a case withdrawn later is still in it, and the release page says so)."""
    return (FeedbackCase.objects.filter(batch_items__batch__dataset_version__runs__release=release)
            .exclude(pk__in=_withdrawn_before_build(release)).order_by("id"))


def releases_for_case(*, case: FeedbackCase) -> list[Release]:
    """Published releases trained on a dataset holding the case (what its submitter sees)."""
    found = release_queryset_public().filter(run__dataset_version__batch__items__case=case).distinct()
    return [release for release in found
            if case.pk not in release.run.dataset_version.manifest.get("withdrawn_cases", [])]


def releases_by_case(*, case_ids: list[int]) -> dict[int, list[Release]]:
    """`releases_for_case` for a page of cases in one query: case id -> its published releases, newest first."""
    rows = release_queryset_public().filter(run__dataset_version__batch__items__case_id__in=case_ids).annotate(
        addressed_case_id=F("run__dataset_version__batch__items__case_id")
    )
    found: dict[int, list[Release]] = {case_id: [] for case_id in case_ids}
    for release in rows:
        if release.addressed_case_id in release.run.dataset_version.manifest.get("withdrawn_cases", []):
            continue  # withdrawn before that dataset was built: not in it
        if all(seen.pk != release.pk for seen in found[release.addressed_case_id]):
            found[release.addressed_case_id].append(release)
    return found


def release_published_for_batch(*, batch: DatasetBatch) -> Release | None:
    """The newest published release trained on this batch's dataset, if any."""
    published = Release.objects.filter(run__dataset_version__batch=batch, status=ReleaseStatus.PUBLISHED)
    return published.order_by("-published_at", "-id").first()
