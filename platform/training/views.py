from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from training.forms import OverrideForm, RunStartForm
from training.models import TrainingRun
from training.selectors import evaluation_for_run, run_get, run_loss_curve, run_progress, run_queryset
from training.services import evaluation_override, run_cancel, run_start
from training.services.evaluations import OVERRIDE_PERMISSION
from training.services.runs import CANCEL_PERMISSION, START_PERMISSION


def _run_or_404(run_id: int) -> TrainingRun:
    run = run_get(run_id=run_id)
    if run is None:
        raise Http404("No such run.")
    return run


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


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
        "progress": run_progress(run=run),
        "curve": run_loss_curve(run=run),
        "evaluation": evaluation_for_run(run=run),
        "override_form": OverrideForm(),
        "can_cancel": request.user.has_perm(CANCEL_PERMISSION),
        "can_override": request.user.has_perm(OVERRIDE_PERMISSION),
    }
    return render(request, "training/run_detail.html", context)


@require_GET
def run_progress_json(request: HttpRequest, run_id: int) -> JsonResponse:
    return JsonResponse(run_progress(run=_run_or_404(run_id)))


@login_required
@permission_required(CANCEL_PERMISSION, raise_exception=True)
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(run_id)
    try:
        run = run_cancel(run=run, by=request.user)
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, f"Run #{run.pk} is {run.get_status_display()}.")
    return redirect("training:run_detail", run_id=run.pk)


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
