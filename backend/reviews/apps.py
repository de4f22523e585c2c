from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "backend.reviews"
    verbose_name = "Reader studies"
