"""Batch pages for maintainers: list, create, review, edit a draft, approve or discard, retry a failed build."""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from curation.forms import BatchCaseAddForm, BatchCreateForm, BenchmarkRegisterForm
from curation.models import BenchmarkSet, DatasetBatch
from curation.selectors import batch_get, batch_queryset, batch_review, benchmark_queryset, case_queryset_batchable
from curation.services import (
    batch_approve,
    batch_case_add,
    batch_case_remove,
    batch_create,
    batch_discard,
    dataset_version_retry,
)
from curation.services.batches import ADD_PERMISSION, APPROVE_PERMISSION, CHANGE_PERMISSION
from curation.services.benchmarks import benchmark_register, benchmark_set_active
from curation.services.dataset_versions import batch_curation_preview

VIEW_PERMISSION = "curation.view_datasetbatch"


def _batch_or_404(batch_id: int) -> DatasetBatch:
    batch = batch_get(batch_id=batch_id)
    if batch is None:
        raise Http404("No such batch.")
    return batch


def _act(request: HttpRequest, batch_id: int, action: Callable[[DatasetBatch], object], done: str) -> HttpResponse:
    """Run one service on a batch, reporting its refusal (not a 500) on the batch page."""
    batch = _batch_or_404(batch_id)
    try:
        action(batch)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, done)
    return redirect("curation:batch_detail", batch_id=batch.pk)


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def batch_list(request: HttpRequest) -> HttpResponse:
    context = {"batches": batch_queryset()[:200], "waiting": case_queryset_batchable().count()}
    return render(request, "curation/batch_list.html", context)


@login_required
@permission_required(ADD_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def batch_create_view(request: HttpRequest) -> HttpResponse:
    form = BatchCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            batch = batch_create(
                by=request.user,
                name=form.cleaned_data["name"],
                created_before=form.cleaned_cutoff(),
                limit=form.cleaned_data["limit"],
                notes=form.cleaned_data["notes"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Draft batch {batch.name} created: review it, then approve.")
            return redirect("curation:batch_detail", batch_id=batch.pk)
    preview = case_queryset_batchable()
    return render(request, "curation/batch_create.html", {"form": form, "preview": preview[:50], "n": preview.count()})


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = _batch_or_404(batch_id)
    version = getattr(batch, "dataset_version", None)
    context = {
        "batch": batch,
        "review": batch_review(batch=batch),
        "version": version,
        "add_form": BatchCaseAddForm(),
        # Before approval, what the build would do to these rows; after it, what the build did.
        "curation": batch_curation_preview(batch=batch) if version is None else version.manifest.get("curation"),
    }
    return render(request, "curation/batch_detail.html", context)


@login_required
@permission_required(APPROVE_PERMISSION, raise_exception=True)
@require_POST
def batch_approve_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(
        request, batch_id, lambda b: batch_approve(batch=b, by=request.user), "Approved: the dataset is being built."
    )


@login_required
@permission_required(APPROVE_PERMISSION, raise_exception=True)
@require_POST
def dataset_version_retry_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    def retry(batch: DatasetBatch) -> object:
        version = getattr(batch, "dataset_version", None)
        if version is None:
            raise ValidationError(f"Batch {batch.name} has no dataset version; approve it first.")
        return dataset_version_retry(version=version, by=request.user)

    return _act(request, batch_id, retry, "Build queued again.")


@login_required
@permission_required(CHANGE_PERMISSION, raise_exception=True)
@require_POST
def batch_discard_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    return _act(request, batch_id, lambda b: batch_discard(batch=b, by=request.user), "Batch discarded.")


@login_required
@permission_required(CHANGE_PERMISSION, raise_exception=True)
@require_POST
def batch_case_remove_view(request: HttpRequest, batch_id: int, case_id: int) -> HttpResponse:
    return _act(
        request,
        batch_id,
        lambda b: batch_case_remove(batch=b, case_id=case_id, by=request.user),
        f"Case #{case_id} removed from the batch.",
    )


@login_required
@permission_required(CHANGE_PERMISSION, raise_exception=True)
@require_POST
def batch_case_add_view(request: HttpRequest, batch_id: int) -> HttpResponse:
    form = BatchCaseAddForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("curation:batch_detail", batch_id=batch_id)
    case_id, weight = form.cleaned_data["case_id"], form.cleaned_data["weight"]
    return _act(
        request,
        batch_id,
        lambda b: batch_case_add(batch=b, case_id=case_id, by=request.user, weight=weight),
        f"Case #{case_id} added to the batch.",
    )


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def benchmark_list(request: HttpRequest) -> HttpResponse:
    """The registered benchmark sets, and the form that registers one (maintainers)."""
    form = BenchmarkRegisterForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied("Only maintainers can register benchmark sets.")
        if form.is_valid():
            try:
                benchmark = benchmark_register(name=form.cleaned_data["name"], data=form.cleaned_data["file"].read(),
                                               by=request.user, description=form.cleaned_data["description"])
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                messages.success(request, f"Benchmark {benchmark.name} registered: {benchmark.item_count} items are "
                                          "kept out of every dataset built from now on.")
                return redirect("curation:benchmark_list")
    return render(request, "curation/benchmark_list.html", {"form": form, "benchmarks": benchmark_queryset()})


@login_required
@permission_required(APPROVE_PERMISSION, raise_exception=True)
@require_POST
def benchmark_toggle(request: HttpRequest, benchmark_id: int) -> HttpResponse:
    benchmark = BenchmarkSet.objects.filter(pk=benchmark_id).first()
    if benchmark is None:
        raise Http404("No such benchmark.")
    benchmark = benchmark_set_active(benchmark=benchmark, active=not benchmark.active, by=request.user)
    messages.success(request, f"Benchmark {benchmark.name} is {'active' if benchmark.active else 'inactive'}.")
    return redirect("curation:benchmark_list")
