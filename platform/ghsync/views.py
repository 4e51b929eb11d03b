import json

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.roles import TRIAGE_PERMISSION
from ghsync import selectors, services
from intake.models import CaseStatus


@csrf_exempt  # GitHub cannot send a CSRF token; the HMAC signature authenticates the request.
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store once, answer; `ghsync.tasks.process_delivery` does the work after commit."""
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        return JsonResponse({"error": "missing X-Hub-Signature-256"}, status=401)
    if not services.webhook_signature_valid(
        secret=settings.GITHUB_WEBHOOK_SECRET, body=request.body, signature=signature
    ):
        return JsonResponse({"error": "bad signature"}, status=403)
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "malformed JSON"}, status=400)
    delivery_id, event = request.headers.get("X-GitHub-Delivery", ""), request.headers.get("X-GitHub-Event", "")
    if not isinstance(payload, dict) or not delivery_id or not event:
        return JsonResponse({"error": "not a GitHub delivery"}, status=400)
    delivery = services.webhook_receive(delivery_id=delivery_id, event=event, payload=payload)
    if delivery is None:
        return JsonResponse({"status": "duplicate delivery"}, status=200)
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return JsonResponse({"status": "queued"}, status=202)


def _enqueue(delivery_id: int) -> None:
    from ghsync.tasks import process_delivery

    process_delivery.delay(delivery_id)


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
    }
    return render(request, "ghsync/priorities.html", context)
