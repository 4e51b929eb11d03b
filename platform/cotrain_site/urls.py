from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("", include("intake.urls")),
    path("accounts/", include("accounts.urls")),
    path("runs/", include("training.urls")),
    path("github/", include("ghsync.urls")),
    path("batches/", include("curation.urls")),
    path("releases/", include("releases.urls")),
    path("api/v1/", include("intake.api_urls")),
    path("api/v1/", include("releases.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
