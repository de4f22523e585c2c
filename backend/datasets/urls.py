from django.urls import path

from backend.datasets import views

app_name = "datasets"

urlpatterns = [
    path("", views.dataset_list, name="list"),
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("images/<int:pk>/file", views.image_file, name="image-file"),
]
