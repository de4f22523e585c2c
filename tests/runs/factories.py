import factory

from backend.runs.models import Run


class RunFactory(factory.django.DjangoModelFactory):
    """A run row as launch_run would store it (without enqueueing anything)."""

    class Meta:
        model = Run

    kind = Run.Kind.TRAIN_CONDITIONAL
    config = factory.LazyFunction(dict)
    status = Run.Status.QUEUED
