import re
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.roles import SUBMIT_PERMISSION, TRIAGE_PERMISSION
from accounts.selectors import user_is_maintainer
from intake.forms import BulkTriageForm, CaseForm, CaseSubmitForm, TriageFilterForm, TriageForm
from intake.models import CaseSource, CaseStatus, FeedbackCase
from intake.selectors import (
    PUBLIC_STATUSES,
    case_count_by_status,
    case_events,
    case_get_visible,
    case_ids_voted_by,
    case_page_for_author,
    case_page_for_triage,
    case_queryset_public,
    case_scenarios,
    cases_likely_duplicates,
)
from intake.services import (
    case_answer_info_request,
    case_submit,
    case_transition,
    case_unvote,
    case_vote,
    cases_bulk_transition,
)
from intake.throttles import submit_refusal

PUBLIC_PAGE_SIZE = 30
# Cases triage may still mark as a duplicate (TRANSITIONS in intake.services): only these show likely duplicates.
MARKABLE_DUPLICATE = {CaseStatus.NEW, CaseStatus.NEEDS_INFO}
# Pages past this are refused (404): deeper OFFSETs only cost the database, and no one reads them.
PUBLIC_MAX_PAGE = 10_000
# Ids and page numbers are ASCII digits that fit a bigint; str.isdigit() would also pass "²" (int() refuses it)
# and 5,000 nines (which int() refuses, and PostgreSQL could not compare anyway).
_INT_PARAM_RE = re.compile(r"[0-9]{1,18}")


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if _INT_PARAM_RE.fullmatch(value) else None


def _page_param(request: HttpRequest) -> int:
    """The public list's page number: 1 unless a number is given; a 404 past PUBLIC_MAX_PAGE."""
    value = request.GET.get("page", "")
    if value.isascii() and value.isdigit() and (len(value) > 18 or int(value) > PUBLIC_MAX_PAGE):
        raise Http404("No such page.")
    return max(_int_param(request, "page") or 1, 1)


def _visible_case_or_404(request: HttpRequest, case_id: int) -> FeedbackCase:
    case = case_get_visible(case_id=case_id, user=request.user)
    if case is None:
        raise Http404("No such case.")
    return case


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "intake/home.html", {"counts": case_count_by_status()})


@login_required
@permission_required(SUBMIT_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def submit(request: HttpRequest) -> HttpResponse:
    form = CaseSubmitForm(request.POST or None)
    refusal = submit_refusal(request)
    if refusal is not None:
        # The bound form goes back to the page: nothing they typed is lost while they wait.
        messages.error(request, refusal)
        return render(request, "intake/submit.html", {"form": form}, status=429)
    if request.method == "POST" and form.is_valid():
        try:
            case, created = case_submit(author=request.user, data=form.to_input(), source=CaseSource.WEB,
                                        idempotency_key=form.cleaned_data["idempotency_key"])
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            done = "was submitted for review" if created else "was already submitted (this is the same form sent again)"
            messages.success(request, f"Thank you: case #{case.pk} {done}.")
            return redirect("intake:case_detail", case_id=case.pk)
    return render(request, "intake/submit.html", {"form": form})


@login_required
def my_cases(request: HttpRequest) -> HttpResponse:
    page = case_page_for_author(
        user=request.user, before=_int_param(request, "before"), after=_int_param(request, "after")
    )
    return render(request, "intake/my_cases.html", {"page": page})


def case_detail(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _visible_case_or_404(request, case_id)
    is_author = request.user.is_authenticated and case.author_id == request.user.pk
    insider = is_author or user_is_maintainer(user=request.user)
    context = {
        "case": case,
        "is_author": is_author,
        # Personal data a contributor typed is shown masked to everyone but them and the maintainers.
        "reveal": insider,
        "events": case_events(case=case) if insider else None,
        "triage_form": TriageForm(),
        "voted": case.pk in case_ids_voted_by(user=request.user, case_ids=[case.pk]),
        "votable": case.status in PUBLIC_STATUSES,
        "likely_duplicates": cases_likely_duplicates(cases=[case])[case.pk] if user_is_maintainer(
            user=request.user) else [],
        "markable": case.status in MARKABLE_DUPLICATE,
    }
    return render(request, "intake/case_detail.html", context)


@login_required
@require_POST
def case_withdraw(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _visible_case_or_404(request, case_id)
    try:
        case_transition(case=case, to_status=CaseStatus.WITHDRAWN, actor=request.user, note="Withdrawn by the author.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("intake:case_detail", case_id=case.pk)


@login_required
@require_http_methods(["GET", "POST"])
def case_answer(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _visible_case_or_404(request, case_id)
    if case.author_id != request.user.pk or case.status != CaseStatus.NEEDS_INFO:
        raise Http404("Only the author of a case that needs information can edit it.")
    initial = {"tags_text": ", ".join(case.tags), "license_consent": case.license_consent}
    form = CaseForm(request.POST or None, instance=case, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            case_answer_info_request(case=case, actor=request.user, data=form.to_input())
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Thank you: the case is back in the review queue.")
            return redirect("intake:case_detail", case_id=case.pk)
    return render(request, "intake/case_answer.html", {"form": form, "case": case})


def requests_public(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", CaseStatus.ACCEPTED)
    page_number = _page_param(request)
    offset = (page_number - 1) * PUBLIC_PAGE_SIZE
    rows = list(case_queryset_public(status=status)[offset : offset + PUBLIC_PAGE_SIZE + 1])
    cases = rows[:PUBLIC_PAGE_SIZE]
    context = {
        "cases": cases,
        "status": status if status in PUBLIC_STATUSES else CaseStatus.ACCEPTED,
        "statuses": PUBLIC_STATUSES,
        "page_number": page_number,
        "has_next": len(rows) > PUBLIC_PAGE_SIZE,
        "voted": case_ids_voted_by(user=request.user, case_ids=[case.pk for case in cases]),
    }
    return render(request, "intake/requests_public.html", context)


@login_required
@require_POST
def case_vote_toggle(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _visible_case_or_404(request, case_id)
    try:
        if request.POST.get("vote") == "remove":
            case_unvote(case=case, user=request.user)
        else:
            case_vote(case=case, user=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    next_url = request.POST.get("next", "")
    return redirect(next_url if next_url.startswith("/") and not next_url.startswith("//") else "intake:requests")


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
def triage_list(request: HttpRequest) -> HttpResponse:
    filter_form = TriageFilterForm(request.GET)
    filters = filter_form.filters()
    page = case_page_for_triage(
        filters=filters, before=_int_param(request, "before"), after=_int_param(request, "after")
    )
    query = {key: value for key, value in vars(filters).items() if value}
    context = {
        "filter_form": filter_form,
        "page": page,
        "query": urlencode(query),
        "scenarios": case_scenarios(),
        "counts": case_count_by_status(),
        "bulk_form": BulkTriageForm(),
        "likely_duplicates": cases_likely_duplicates(cases=[c for c in page.cases if c.status in MARKABLE_DUPLICATE]),
    }
    return render(request, "intake/triage_list.html", context)


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
@require_POST
def triage_mark_duplicate(request: HttpRequest, case_id: int, original_id: int) -> HttpResponse:
    """The one-click answer to a likely duplicate shown at triage: this case duplicates that one."""
    case = _visible_case_or_404(request, case_id)
    try:
        case_transition(case=case, to_status=CaseStatus.DUPLICATE, actor=request.user, duplicate_of_id=original_id,
                        note=f"Near-duplicate of #{original_id}, found at triage.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Case #{case.pk} is now a duplicate of #{original_id}.")
    if "query" in request.POST:  # sent from the triage list: back to the same page of it
        return redirect(f"{reverse('intake:triage')}?{request.POST['query']}")
    return redirect("intake:case_detail", case_id=case.pk)


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
@require_POST
def triage_case(request: HttpRequest, case_id: int) -> HttpResponse:
    case = _visible_case_or_404(request, case_id)
    form = TriageForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect("intake:case_detail", case_id=case.pk)
    try:
        case = case_transition(
            case=case,
            to_status=form.to_status,
            actor=request.user,
            note=form.cleaned_data["note"],
            duplicate_of_id=form.cleaned_data["duplicate_of"],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Case #{case.pk} is now {case.get_status_display()}.")
    return redirect("intake:case_detail", case_id=case.pk)


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
@require_POST
def triage_bulk(request: HttpRequest) -> HttpResponse:
    form = BulkTriageForm(request.POST)
    back = f"{reverse('intake:triage')}?{request.POST.get('query', '')}"
    if not form.is_valid():
        messages.error(request, "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        return redirect(back)
    try:
        moved = cases_bulk_transition(
            case_ids=form.cleaned_data["case_ids"],
            to_status=form.to_status,
            actor=request.user,
            note=form.cleaned_data["note"],
            duplicate_of_id=form.cleaned_data["duplicate_of"],
        )
    except ValidationError as exc:
        messages.error(request, "Nothing was changed: " + " ".join(exc.messages))
    else:
        messages.success(request, f"{moved} cases are now {CaseStatus(form.to_status).label}.")
    return redirect(back)
