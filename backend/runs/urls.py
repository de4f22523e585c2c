from django.urls import path

from backend.runs import views

app_name = "runs"

urlpatterns = [
    path("", views.run_list, name="list"),
    path("compare/", views.run_compare, name="compare"),
    path("<int:pk>/", views.run_detail, name="detail"),
    path("<int:pk>/progress.json", views.run_progress, name="progress"),
    path("<int:pk>/sample.png", views.run_sample, name="sample"),
    path("<int:pk>/cancel", views.run_cancel, name="cancel"),
]
