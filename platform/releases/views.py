"""Release pages (public), the publish form (maintainers) and file downloads.

Downloads speak HTTP/1.1 caching and ranges so that large checkpoints resume:
the ETag is the file's sha256 (the content never changes under a tag), `Range:
bytes=a-b` gets a 206, an unsatisfiable or malformed range a 416, a matching
`If-None-Match` a 304. Several ranges in one request are answered with the whole
file (RFC 9110 lets a server ignore Range). A download is counted once per client
(address and account) and file within DOWNLOAD_COUNT_WINDOW_SECONDS, whatever the
range: resumed parts, a download manager's parallel chunks and a loop of one-byte
ranges are all one download.
"""

import hashlib
import mimetypes
import re
from collections.abc import Iterator
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_http_methods, require_safe

from cotrain_site.client_ip import client_ip
from releases.forms import PublishForm
from releases.models import ReleaseFile
from releases.selectors import (
    release_cases,
    release_file_abspath,
    release_file_get_public,
    release_files,
    release_for_run,
    release_get_visible,
    release_queryset_public,
)
from releases.services import PUBLISH_PERMISSION, release_file_count_download, release_request
from training.models import Evaluation, TrainingRun

CHUNK = 1 << 20
RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
# No file is 10**18 bytes long: a longer number in a Range header means "past the end". Python's int()
# refuses strings of more than 4,300 digits, so they are never parsed.
PAST_THE_END = 10**18


DOWNLOAD_COUNT_WINDOW_SECONDS = 60 * 60


def _offset(digits: str) -> int:
    return int(digits) if len(digits) < 19 else PAST_THE_END


def _count_download(request: HttpRequest, file: ReleaseFile) -> None:
    """Count the download unless this client fetched this file within the window (any range, any part)."""
    client = f"{file.pk}|{client_ip(request)}|{request.user.pk or ''}"
    key = "releases:downloaded:" + hashlib.sha256(client.encode()).hexdigest()
    # add() is atomic in the cache: of two parallel chunk requests, exactly one counts.
    if cache.add(key, 1, timeout=DOWNLOAD_COUNT_WINDOW_SECONDS):
        release_file_count_download(file_id=file.pk)


def release_list(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/release_list.html", {"releases": release_queryset_public()[:100]})


def release_detail(request: HttpRequest, tag: str) -> HttpResponse:
    release = release_get_visible(tag=tag, user=request.user)
    if release is None:
        raise Http404("No such release.")
    context = {"release": release, "files": release_files(release=release), "cases": release_cases(release=release)}
    return render(request, "releases/release_detail.html", context)


@login_required
@permission_required(PUBLISH_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def release_publish_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = TrainingRun.objects.select_related("dataset_version__batch").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    form = PublishForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            release = release_request(run=run, by=request.user, **form.cleaned_data)
        except (ValidationError, PermissionDenied) as exc:
            form.add_error(None, " ".join(getattr(exc, "messages", [str(exc)])))
        else:
            messages.success(request, f"Publishing {release.tag}: the files are being copied; reload to follow.")
            return redirect("releases:detail", tag=release.tag)
    context = {
        "run": run,
        "form": form,
        "evaluation": Evaluation.objects.filter(run=run).first(),
        "existing": release_for_run(run_id=run.pk),
    }
    return render(request, "releases/publish.html", context)


def _parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive; None to serve the whole file; "bad" for a 416."""
    if not header.startswith("bytes=") or "," in header:
        return None
    match = RANGE_RE.match(header.replace(" ", ""))
    if match is None or match.groups() == ("", ""):
        return "bad"
    first, last = match.groups()
    if first == "":  # the last N bytes
        length = _offset(last)
        return (max(size - length, 0), size - 1) if length > 0 and size > 0 else "bad"
    start, end = _offset(first), _offset(last) if last else size - 1
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def _read_span(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def _headers(response: HttpResponse, etag: str) -> HttpResponse:
    response["ETag"] = etag
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@require_safe
def file_download(request: HttpRequest, tag: str, name: str) -> HttpResponse:
    file = release_file_get_public(tag=tag, name=name)
    if file is None:
        raise Http404("No such file.")
    path = release_file_abspath(file=file)
    etag = f'"{file.sha256}"'
    if _etag_matches(request.headers.get("If-None-Match", ""), etag):
        return _headers(HttpResponse(status=304), etag)
    wanted = _parse_range(request.headers.get("Range", ""), file.size)
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != etag:
        wanted = None  # the client holds another version: send it all
    if wanted == "bad":
        response = _headers(HttpResponse(status=416), etag)
        response["Content-Range"] = f"bytes */{file.size}"
        return response
    start, end = wanted if isinstance(wanted, tuple) else (0, file.size - 1)
    if request.method == "GET":
        _count_download(request, file)
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if isinstance(wanted, tuple):
        body = _read_span(path, start, end - start + 1)
        response = StreamingHttpResponse(body, status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        response["Content-Length"] = str(end - start + 1)
        response["Content-Disposition"] = content_disposition_header(True, Path(file.name).name)
    else:
        response = FileResponse(path.open("rb"), as_attachment=True, filename=Path(file.name).name,
                                content_type=content_type)
    return _headers(response, etag)
