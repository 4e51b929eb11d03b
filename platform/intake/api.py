"""The REST API: report a case, read your own cases, list accepted requests."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.roles import SUBMIT_PERMISSION
from intake.models import CaseSource, FeedbackCase
from intake.selectors import case_queryset_for_author, case_queryset_public
from intake.serializers import CaseSerializer, CaseSubmitSerializer, PublicRequestSerializer
from intake.services import case_submit
from intake.throttles import SubmitIpRateThrottle, SubmitUserRateThrottle


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus a clear 400 for bodies over COTRAIN_MAX_REQUEST_BYTES."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response({"detail": f"Request body too large: the limit is {limit} bytes."}, status=400)
    return drf_exception_handler(exc, context)


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description="Any unique string (a UUID): sending the same case again with it within 24 hours returns the "
    "first case (200) instead of creating another. Use it to retry after a connection error.",
)


class CanSubmit(permissions.BasePermission):
    message = "Your account cannot submit cases."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.method in permissions.SAFE_METHODS or request.user.has_perm(SUBMIT_PERMISSION)


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50


class MostVotedFirst(CursorPagination):
    ordering = ("-vote_count", "-id")
    page_size = 50


class CaseListCreate(generics.ListAPIView):
    """Your own cases (GET), or report a new one (POST, rate-limited)."""

    serializer_class = CaseSerializer
    pagination_class = NewestFirst
    permission_classes = [permissions.IsAuthenticated, CanSubmit]
    throttle_classes = [SubmitUserRateThrottle, SubmitIpRateThrottle]

    def get_queryset(self) -> QuerySet[FeedbackCase]:
        return case_queryset_for_author(user=self.request.user)

    @extend_schema(
        request=CaseSubmitSerializer,
        responses={201: CaseSerializer, 200: CaseSerializer},
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )
    def post(self, request: Request) -> Response:
        serializer = CaseSubmitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            case, created = case_submit(
                author=request.user,
                data=serializer.to_case_input(),
                source=CaseSource.API,
                source_url=serializer.validated_data["source_url"],
                idempotency_key=request.headers.get("Idempotency-Key"),
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc
        # A replay answers 200 with the first case: the client learns the id it missed, and nothing new exists.
        return Response(CaseSerializer(case).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class CaseDetail(generics.RetrieveAPIView):
    """One of your own cases."""

    serializer_class = CaseSerializer

    def get_queryset(self) -> QuerySet[FeedbackCase]:
        return case_queryset_for_author(user=self.request.user)


class AcceptedRequestList(generics.ListAPIView):
    """Accepted requests, most voted first; public."""

    serializer_class = PublicRequestSerializer
    pagination_class = MostVotedFirst
    permission_classes = [permissions.AllowAny]

    def get_queryset(self) -> QuerySet[FeedbackCase]:
        return case_queryset_public()
