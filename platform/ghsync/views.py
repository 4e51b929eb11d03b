from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.roles import TRIAGE_PERMISSION
from ghsync import selectors, services
from ghsync.sanitize import parse_json
from intake.models import CaseStatus


@csrf_exempt  # GitHub cannot send a CSRF token; the HMAC signature authenticates the request.
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store once, answer; `ghsync.tasks.process_delivery` does the work after commit.

    A broker outage still answers 202: the delivery waits `received` and the sweeper queues it.
    """
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        return JsonResponse({"error": "missing X-Hub-Signature-256"}, status=401)
    if not services.webhook_signature_valid(
        secret=settings.GITHUB_WEBHOOK_SECRET, body=request.body, signature=signature
    ):
        return JsonResponse({"error": "bad signature"}, status=403)
    try:
        payload = parse_json(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return JsonResponse({"error": f"malformed JSON: {exc}"}, status=400)
    delivery_id, event = request.headers.get("X-GitHub-Delivery", ""), request.headers.get("X-GitHub-Event", "")
    if not isinstance(payload, dict) or not event:
        return JsonResponse({"error": "not a GitHub delivery"}, status=400)
    if error := services.delivery_id_error(delivery_id):
        return JsonResponse({"error": error}, status=400)
    _delivery, queued = services.webhook_receive(delivery_id=delivery_id, event=event, payload=payload)
    if not queued:
        return JsonResponse({"status": "duplicate delivery"}, status=200)
    return JsonResponse({"status": "queued"}, status=202)


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
def priorities(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    status = status if status in CaseStatus.values else ""
    context = {
        "ranked": selectors.cases_by_priority(status=status),
        "sources": selectors.sources_all(),
        "status": status,
        "statuses": CaseStatus.choices,
        "failed_deliveries": selectors.deliveries_failed(),
        "failed_comments": selectors.comments_failed(),
    }
    return render(request, "ghsync/priorities.html", context)


def _retry_and_show(request: HttpRequest, retry: Callable[[], object], *, what: str, done: str) -> HttpResponse:
    """A maintainer's retry button on the priorities page: do it, say so (or why not), back to the page."""
    try:
        retry()
        messages.success(request, done)
    except ObjectDoesNotExist as exc:
        raise Http404(f"No such {what}.") from exc
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("ghsync:priorities")


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
@require_POST
def delivery_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """A maintainer processes a failed webhook delivery again."""
    return _retry_and_show(request, lambda: services.delivery_reprocess(delivery_id=pk,
                                                                        why=f"processed again by {request.user}"),
                           what="delivery", done="The delivery is queued to be processed again.")


@login_required
@permission_required(TRIAGE_PERMISSION, raise_exception=True)
@require_POST
def comment_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """A maintainer tries a failed GitHub post again (the marker is looked for first: never posted twice)."""
    return _retry_and_show(request, lambda: services.comment_retry(comment_id=pk), what="post",
                           done="The post is queued to be tried again.")
