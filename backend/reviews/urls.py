from django.urls import path

from backend.reviews import views

app_name = "reviews"

urlpatterns = [
    # Readers
    path("", views.my_studies, name="my-studies"),
    path("reading/<int:pk>/", views.reading, name="reading"),
    path("reading/<int:pk>/case/<int:position>/", views.case, name="case"),
    path("reading/<int:pk>/submit/", views.submit, name="submit"),
    path("image/<str:token>", views.image, name="image"),
    # Study admins
    path("studies/", views.study_list, name="study-list"),
    path("studies/new/", views.study_create, name="study-create"),
    path("studies/<int:pk>/", views.study_detail, name="study-detail"),
    path("studies/<int:pk>/export.csv", views.export_csv, name="export-csv"),
    path("studies/<int:pk>/export.json", views.export_json, name="export-json"),
    path("studies/<int:pk>/<str:action>/", views.study_action, name="study-action"),
]
