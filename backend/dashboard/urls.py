from django.urls import path

from backend.dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<int:pk>/", views.project, name="project"),
    path("projects/<int:pk>/targets/", views.project_edit, name="project-edit"),
    path("projects/<int:pk>/decide/", views.decide, name="project-decide"),
    path("projects/<int:pk>/report.html", views.export_html, name="project-export-html"),
    path("projects/<int:pk>/report.pdf", views.export_pdf, name="project-export-pdf"),
]
