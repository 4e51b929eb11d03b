from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.selectors import user_is_maintainer
from training.forms import OverrideForm, RunStartForm
from training.models import TrainingRun
from training.selectors import evaluation_for_run, run_get, run_loss_curve, run_progress, run_queryset
from training.services import evaluation_override, evaluation_retry, run_cancel, run_retry, run_start
from training.services.evaluations import OVERRIDE_PERMISSION
from training.services.runs import CANCEL_PERMISSION, START_PERMISSION


def _run_or_404(run_id: int) -> TrainingRun:
    run = run_get(run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    return run


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _act_and_show(request: HttpRequest, run: TrainingRun, action: Callable[[], str]) -> HttpResponse:
    """A maintainer's button on the run page: do it, show its message (or why not), back to the run."""
    try:
        messages.success(request, action())
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    return redirect("training:run_detail", run_id=run.pk)


# The trainer's log, its errors and the worker's paths say where files live on the
# servers (and echo the command line): for maintainers. Everyone else sees status,
# progress, loss and times.
INTERNAL_PROGRESS_KEYS = ("log_tail", "error")


def _progress_for(request: HttpRequest, run: TrainingRun) -> dict[str, object]:
    progress = run_progress(run=run)
    if not user_is_maintainer(user=request.user):
        for key in INTERNAL_PROGRESS_KEYS:
            progress.pop(key, None)
    return progress


@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunStartForm() if request.user.has_perm(START_PERMISSION) else None
    return render(request, "training/run_list.html", {"runs": run_queryset()[:100], "form": form})


@login_required
@permission_required(START_PERMISSION, raise_exception=True)
@require_POST
def run_start_view(request: HttpRequest) -> HttpResponse:
    form = RunStartForm(request.POST)
    if form.is_valid():
        try:
            run = run_start(version=form.cleaned_data["version"], base_checkpoint=form.cleaned_data["base_checkpoint"],
                            recipe=form.recipe(), by=request.user)
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, f"Run #{run.pk} is queued.")
            return redirect("training:run_detail", run_id=run.pk)
    return render(request, "training/run_list.html", {"runs": run_queryset()[:100], "form": form}, status=400)


@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    context = {
        "run": run,
        "progress": _progress_for(request, run),
        "show_internals": user_is_maintainer(user=request.user),
        "curve": run_loss_curve(run=run),
        "evaluation": evaluation_for_run(run=run),
        "override_form": OverrideForm(),
        "can_cancel": request.user.has_perm(CANCEL_PERMISSION),
        "can_override": request.user.has_perm(OVERRIDE_PERMISSION),
    }
    return render(request, "training/run_detail.html", context)


@require_GET
def run_progress_json(request: HttpRequest, run_id: int) -> JsonResponse:
    return JsonResponse(_progress_for(request, _run_or_404(run_id)))


@login_required
@permission_required(CANCEL_PERMISSION, raise_exception=True)
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)

    def cancel() -> str:
        return f"Run #{run.pk} is {run_cancel(run=run, by=request.user).get_status_display()}."

    return _act_and_show(request, run, cancel)


@login_required
@permission_required(OVERRIDE_PERMISSION, raise_exception=True)
@require_POST
def evaluation_override_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    evaluation = evaluation_for_run(run=run)
    form = OverrideForm(request.POST)
    if evaluation is None:
        messages.error(request, "This run has no evaluation yet.")
    elif not form.is_valid():
        messages.error(request, "Write a reason for the override.")
    else:
        try:
            evaluation_override(evaluation=evaluation, by=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, "Evaluation overridden; the run can be published.")
    return redirect("training:run_detail", run_id=run.pk)


@login_required
@permission_required(START_PERMISSION, raise_exception=True)
@require_POST
def run_retry_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)

    def retry() -> str:
        run_retry(run=run, by=request.user)
        return f"Run #{run.pk} is queued again; it resumes from its newest checkpoint."

    return _act_and_show(request, run, retry)


@login_required
@permission_required(START_PERMISSION, raise_exception=True)
@require_POST
def evaluation_retry_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)

    def retry() -> str:
        evaluation = evaluation_for_run(run=run)
        if evaluation is None:
            raise ValidationError("This run has no evaluation yet.")
        evaluation_retry(evaluation=evaluation, by=request.user)
        return "The evaluation is queued again."

    return _act_and_show(request, run, retry)
