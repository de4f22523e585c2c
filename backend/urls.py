from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from backend.core_views import healthz
from backend.dashboard.api import ProjectViewSet
from backend.datasets.api import DatasetViewSet, ImageViewSet, TrainingSetViewSet
from backend.runs.api import RunViewSet

router = DefaultRouter()
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("images", ImageViewSet, basename="image")
router.register("training-sets", TrainingSetViewSet, basename="training-set")
router.register("runs", RunViewSet, basename="run")
router.register("projects", ProjectViewSet, basename="project")

urlpatterns = [
    path("", include("backend.dashboard.urls")),
    path("datasets/", include("backend.datasets.urls")),
    path("runs/", include("backend.runs.urls")),
    path("reviews/", include("backend.reviews.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", healthz, name="healthz"),
]

admin.site.site_header = "FairDerm administration"
admin.site.site_title = "FairDerm"

# JSON 404s under /api/ (backend/core_views.py); the HTML page everywhere else.
handler404 = "backend.core_views.not_found"
