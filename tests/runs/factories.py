import factory

from backend.runs.models import Run


class RunFactory(factory.django.DjangoModelFactory):
    """A run row as launch_run would store it (without enqueueing anything)."""

    class Meta:
        model = Run

    kind = Run.Kind.TRAIN_CONDITIONAL
    config = factory.LazyFunction(dict)
    status = Run.Status.QUEUED


#: A conditional model small enough to train in a second on the CPU (16 px, two diagnoses).
TINY_TRAINING = {
    "image_size": 16,
    "block_out_channels": [16, 32],
    "diagnoses": ["nevus", "melanoma"],
    "batch_size": 8,
    "checkpoint_every": 10,
    "keep_checkpoints": 2,
    "sample_every": 0,
    "log_every": 5,
    "num_inference_steps": 2,
}
