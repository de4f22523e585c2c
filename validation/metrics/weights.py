"""Which backbone weights a metric ran on, and whether they are the official ones.

FID, KID and IS use pytorch-fid's InceptionV3 and LPIPS uses lpips' AlexNet trunk. Both
libraries load their weights through ``torch.hub.load_state_dict_from_url``, which reads
``<hub dir>/checkpoints/<file name>`` (the hub dir is ``$TORCH_HOME/hub``, by default
``~/.cache/torch/hub``) and downloads only when the file is missing. FairDerm never lets
them download: ``locate`` looks for the file first and fails with a message naming it and
the folder it belongs in.

A file found there is hashed and labelled:

* ``official``: its sha256 equals the official file's full sha256 (``OfficialWeights.sha256``);
* ``unverified``: only the first 8 hex digits of the official sha256 are known (torch hub
  names files ``<name>-<first 8 hex of sha256>.pth``) and they match: probably official, but
  not proven, so it cannot count towards a literature target either;
* ``non-official``: anything else (e.g. the random stand-ins tests and the offline demo stage).

Only ``official`` results may be compared with literature targets (``Weights.official``).

Sources of the full sha256 values (third-party, see the report of issue #7): the FID
Inception file ``pt_inception-2015-12-05-6726825d.pth`` (95,628,359 bytes) is listed with
sha256 ``6726825d0af5...29b2`` by several independent public projects that pin it (the same
file torch-fidelity redistributes as ``weights-inception-2015-12-05-6726825d.pth``); it agrees
with the 8-hex prefix in its name. No citable full sha256 of torchvision's
``alexnet-owt-7be5be79.pth`` was found, so LPIPS weights are at best ``unverified``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from validation.files import atomic_path, sha256_file

Status = Literal["official", "unverified", "non-official"]


@dataclass(frozen=True)
class OfficialWeights:
    """One backbone's official weight file.

    Attributes:
        key: FairDerm's name for the backbone (``"fid-inception"``, ``"lpips-alex"``).
        filename: The file name in the torch hub cache.
        url: Where the official file is published (for the error message; never fetched).
        sha256: The official file's full sha256, or ``None`` when only the prefix is known.
        prefix: The 8 hex digits of the sha256 that the hub file name carries.
    """

    key: str
    filename: str
    url: str
    sha256: str | None
    prefix: str


FID_INCEPTION = OfficialWeights(
    key="fid-inception",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    prefix="6726825d",
)
LPIPS_ALEX = OfficialWeights(
    key="lpips-alex",
    filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    sha256=None,
    prefix="7be5be79",
)
LPIPS_VGG = OfficialWeights(
    key="lpips-vgg",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256=None,
    prefix="397923af",
)
LPIPS_SQUEEZE = OfficialWeights(
    key="lpips-squeeze",
    filename="squeezenet1_1-b8a52dc0.pth",
    url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
    sha256=None,
    prefix="b8a52dc0",
)
#: sha256 of LPIPS's linear heads, ``lpips/weights/v0.1/<net>.pth``, as shipped in the
#: lpips 0.1.4 wheel on PyPI (hashed from the wheel itself). The heads come with the package,
#: so they are always present; a different file makes the LPIPS weights non-official.
LPIPS_HEADS_SHA256: dict[str, str] = {
    "alex": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "vgg": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "squeeze": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
}

LPIPS_TRUNKS: dict[str, OfficialWeights] = {
    "alex": LPIPS_ALEX,
    "vgg": LPIPS_VGG,
    "squeeze": LPIPS_SQUEEZE,
}


class MissingWeightsError(FileNotFoundError):
    """The backbone's weight file is not in the torch hub cache (nothing is downloaded)."""


@dataclass(frozen=True)
class Weights:
    """A located weight file and its label (see the module docstring)."""

    key: str
    filename: str
    path: str
    sha256: str
    status: Status
    notes: tuple[str, ...] = ()

    @property
    def official(self) -> bool:
        """Whether results on these weights may be compared with literature targets."""
        return self.status == "official"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backbone": self.key,
            "file": self.filename,
            "path": self.path,
            "sha256": self.sha256,
            "status": self.status,
            "label": LABELS[self.status],
            "notes": list(self.notes),
        }


LABELS: dict[str, str] = {
    "official": "official weights (sha256 verified)",
    "unverified": "unverified weights (only the 8-hex sha256 prefix in the file name matches)",
    "non-official": "non-official weights: not comparable with published values",
}


def hub_dir(torch_home: str | os.PathLike[str] | None = None) -> Path:
    """The torch hub folder: ``torch_home/hub`` if given, else torch's own (``$TORCH_HOME/hub``)."""
    if torch_home is not None:
        return Path(torch_home) / "hub"
    import torch

    return Path(torch.hub.get_dir())


def checkpoint_path(
    spec: OfficialWeights, torch_home: str | os.PathLike[str] | None = None
) -> Path:
    return hub_dir(torch_home) / "checkpoints" / spec.filename


def classify(spec: OfficialWeights, digest: str) -> Status:
    """Label a file of sha256 ``digest`` as a copy of ``spec``."""
    if spec.sha256 is not None:
        return "official" if digest == spec.sha256 else "non-official"
    return "unverified" if digest.startswith(spec.prefix) else "non-official"


_HASHES: dict[tuple[str, int, int], str] = {}


def _sha256_cached(path: Path) -> str:
    """sha256 of ``path``, remembered per (path, size, mtime) so a process hashes a file once."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def locate(spec: OfficialWeights, torch_home: str | os.PathLike[str] | None = None) -> Weights:
    """Find ``spec``'s file in the hub cache, hash it and label it.

    Raises:
        MissingWeightsError: naming the file and the folder it goes in, when it is absent.
    """
    path = checkpoint_path(spec, torch_home)
    if not path.is_file():
        raise MissingWeightsError(
            f"weights: {spec.filename} not found. Put the official file ({spec.url}) at "
            f"{path} (the torch hub cache: $TORCH_HOME/hub/checkpoints/); "
            "FairDerm never downloads weights."
        )
    digest = _sha256_cached(path)
    return Weights(spec.key, spec.filename, str(path), digest, classify(spec, digest))


def with_lpips_head(weights: Weights, net: str, head_path: str | os.PathLike[str]) -> Weights:
    """``weights`` of an LPIPS trunk, downgraded to non-official unless the linear head file
    is the one the lpips 0.1.4 wheel ships."""
    digest = _sha256_cached(Path(head_path))
    expected = LPIPS_HEADS_SHA256.get(net)
    if digest == expected:
        note = f"linear head {Path(head_path).name} sha256 {digest[:16]}... as in the lpips 0.1.4 wheel"
        return dataclasses.replace(weights, notes=(*weights.notes, note))
    note = f"linear head {head_path} sha256 {digest[:16]}... is not the lpips 0.1.4 file"
    return dataclasses.replace(weights, status="non-official", notes=(*weights.notes, note))


@contextlib.contextmanager
def using_hub_dir(torch_home: str | os.PathLike[str] | None) -> Iterator[None]:
    """Make torch hub read from ``torch_home/hub`` while libraries build their models."""
    if torch_home is None:
        yield
        return
    import torch

    # Restore torch's own setting exactly: ``set_dir(get_dir())`` would pin the hub folder
    # and make later changes of $TORCH_HOME invisible.
    previous = getattr(torch.hub, "_hub_dir", None)
    torch.hub.set_dir(str(hub_dir(torch_home)))
    try:
        yield
    finally:
        torch.hub._hub_dir = previous


# --- stand-ins for tests and the offline demo -----------------------------------------------


def _standin_state_dict(spec: OfficialWeights, seed: int) -> dict[str, Any]:
    import torch
    import torchvision

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if spec.key == "fid-inception":
            # pytorch-fid's FID Inception has torchvision's layout with 1008 classes and no
            # auxiliary head; its patched blocks subclass torchvision's, so the keys match.
            model = torchvision.models.inception_v3(
                weights=None, aux_logits=False, num_classes=1008, init_weights=False
            )
        elif spec.key == "lpips-alex":
            model = torchvision.models.alexnet(weights=None)
        elif spec.key == "lpips-vgg":
            model = torchvision.models.vgg16(weights=None)
        elif spec.key == "lpips-squeeze":
            model = torchvision.models.squeezenet1_1(weights=None)
        else:
            raise ValueError(f"spec: no stand-in for {spec.key!r}")
        return model.state_dict()
    finally:
        torch.random.set_rng_state(generator_state)


#: Procedural images the Inception stand-in's BatchNorm statistics are fitted on.
CALIBRATION_IMAGES = 32


def calibration_images(n: int = CALIBRATION_IMAGES, seed: int = 0, size: int = 64) -> Any:
    """``n`` deterministic RGB images in [0, 1] (N x 3 x size x size): smooth random colour
    fields (6 x 6 control points, bicubic) with a little pixel noise."""
    import torch

    if n < 2:
        raise ValueError(f"n: BatchNorm statistics need at least 2 images, got {n}")
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=size, mode="bicubic", align_corners=False)
    noise = torch.randn(n, 3, size, size, generator=generator)
    return (images + 0.05 * noise).clamp(0, 1)


def _calibrate_fid_inception(state: dict[str, Any], seed: int) -> dict[str, Any]:
    """``state`` (random FID Inception weights) with every BatchNorm's running mean and
    variance set to its input's statistics on :func:`calibration_images`.

    With torch's default initialisation and identity BatchNorm statistics the activations
    shrink layer after layer, and the 2048-d pool features of random weights are ~1e-8:
    FID on them is degenerate. Fitting the statistics layer by layer (one forward pass in
    training mode with a cumulative average) keeps every layer's pre-activation near unit
    variance, so the 2048-d features differ between images as real features do. The network
    is pytorch-fid's own ``fid_inception_v3`` (its FID blocks), loaded from a scratch hub
    folder exactly as it loads the official file.
    """
    import tempfile

    import torch
    from pytorch_fid.inception import fid_inception_v3

    with tempfile.TemporaryDirectory() as scratch:
        path = checkpoint_path(FID_INCEPTION, scratch)
        path.parent.mkdir(parents=True)
        torch.save(state, path)
        with using_hub_dir(scratch):
            network = fid_inception_v3()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: after one batch, exactly its statistics
    network.train()
    images = torch.nn.functional.interpolate(
        calibration_images(seed=seed), size=(299, 299), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        network(2 * images - 1)  # pytorch-fid's input scaling
    return network.state_dict()


def stage_standin(
    spec: OfficialWeights, torch_home: str | os.PathLike[str] | None = None, seed: int = 0
) -> Path:
    """Write stand-in weights with the official file's keys under the official file name.

    For tests and offline demos only: the file's sha256 is not the official one, so every
    result computed on it is labelled ``non-official``. An existing file is never replaced.
    The weights are random; the FID Inception's BatchNorm statistics are then fitted to
    procedural images (:func:`_calibrate_fid_inception`) so its 2048-d features do not vanish.
    """
    import torch

    path = checkpoint_path(spec, torch_home)
    if path.exists():
        return path
    state = _standin_state_dict(spec, seed)
    if spec.key == FID_INCEPTION.key:
        state = _calibrate_fid_inception(state, seed)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path
