from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "backend.datasets"
    label = "datasets"
    verbose_name = "Datasets"
