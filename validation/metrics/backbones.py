"""The two backbones, built by their own libraries from the torch hub cache.

* ``InceptionFeatures``: pytorch-fid's ``InceptionV3`` (the TF-ported FID Inception). Pool
  features are what ``python -m pytorch_fid --dims D`` computes (block for ``D``, global
  average pooled when spatial); logits are the network's own 1008-way ``fc`` applied to
  the 2048-d pool3 features, for the Inception Score.
* ``LpipsEmbedder``: ``lpips.LPIPS(net=...)``. Because LPIPS is a non-negative weighted sum
  of squared differences of unit-normalised trunk features averaged over space, scaling
  each channel by ``sqrt(w_c / (H_l * W_l))`` turns an image into a vector whose squared
  Euclidean distance to another image's vector *is* their LPIPS distance. Nearest
  neighbours and pairwise diversity then cost one embedding per image instead of one
  network pass per pair (tests compare it with ``lpips.LPIPS.forward``).

Both check their weight file first (``validation.metrics.weights``) and never download.
Images are decoded ahead of the model on ``loader_threads`` threads (PNG and JPEG decoding
release the GIL), in order, so results do not depend on the thread count.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from validation.files import sha256_file
from validation.metrics.cache import FeatureCache
from validation.metrics.images import FILE_THREADS, ImageItem, load_rgb
from validation.metrics.weights import (
    FID_INCEPTION,
    LPIPS_TRUNKS,
    Weights,
    locate,
    using_hub_dir,
    with_lpips_head,
)

Progress = Callable[[int, int], None]

#: Default threads decoding images ahead of the model (pytorch-fid's CLI uses as many workers).
LOADER_THREADS = FILE_THREADS


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _loaded(
    items: Sequence[ImageItem], todo: list[int], threads: int
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """``(index, image)`` for each index of ``todo`` in order, decoded ahead on ``threads``."""
    if threads <= 1:
        for index in todo:
            yield index, load_rgb(items[index].path)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="fairderm-decode") as pool:
        pending = iter(todo)
        window: deque[tuple[int, Future[NDArray[np.float32]]]] = deque()

        def refill() -> None:
            while len(window) < 4 * threads:
                index = next(pending, None)
                if index is None:
                    return
                window.append((index, pool.submit(load_rgb, items[index].path)))

        refill()
        while window:
            index, future = window.popleft()
            refill()
            yield index, future.result()


def _batches(items: Sequence[ImageItem], todo: list[int], batch_size: int, threads: int) -> Any:
    """Batches of indices of ``todo`` whose images share a size (a batch must stack)."""
    pending: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
    for index, array in _loaded(items, todo, threads):
        group = pending.setdefault(array.shape, [])
        group.append((index, array))
        if len(group) == batch_size:
            yield group
            pending[array.shape] = []
    for group in pending.values():
        if group:
            yield group


class InceptionFeatures:
    """pytorch-fid's InceptionV3 giving ``pool`` features of ``dims`` and optionally logits."""

    def __init__(
        self,
        dims: int = 2048,
        *,
        logits: bool = False,
        device: str | torch.device | None = None,
        torch_home: str | None = None,
    ):
        from pytorch_fid.inception import InceptionV3

        if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(
                f"dims: must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}"
            )
        self.weights: Weights = locate(FID_INCEPTION, torch_home)
        self.dims = dims
        self.with_logits = logits
        self.device = resolve_device(device)
        self.block = InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        blocks = sorted({self.block, 3} if logits else {self.block})
        with using_hub_dir(torch_home):
            self.model = InceptionV3(blocks).to(self.device).eval()
        self.fc: torch.nn.Linear | None = None
        if logits:
            state = torch.load(self.weights.path, map_location="cpu", weights_only=True)
            self.fc = torch.nn.Linear(2048, state["fc.weight"].shape[0])
            self.fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
            self.fc.to(self.device).eval()

    @property
    def key(self) -> str:
        return f"fid-inception-{self.weights.sha256[:16]}"

    def kinds(self) -> list[str]:
        return [f"pool{self.dims}"] + (["logits"] if self.with_logits else [])

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """``batch``: N x 3 x H x W in [0, 1]; returns the feature kinds as N x D tensors."""
        outputs = self.model(batch.to(self.device))
        by_block = dict(zip(self.model.output_blocks, outputs, strict=True))
        pool = by_block[self.block]
        if pool.shape[2] != 1 or pool.shape[3] != 1:
            pool = F.adaptive_avg_pool2d(pool, output_size=(1, 1))
        result = {f"pool{self.dims}": pool.flatten(1)}
        if self.fc is not None:
            result["logits"] = self.fc(by_block[3].flatten(1))
        return result

    def extract(
        self,
        items: Sequence[ImageItem],
        cache: FeatureCache,
        batch_size: int = 50,
        on_progress: Progress | None = None,
        loader_threads: int = LOADER_THREADS,
    ) -> dict[str, NDArray[np.float32]]:
        """Features of every item, from the cache where present; new ones are cached."""
        return _extract(self, items, cache, batch_size, on_progress, loader_threads)


class LpipsEmbedder:
    """Images to vectors whose squared distances are LPIPS distances (see module docstring).

    Args:
        net: LPIPS trunk (``alex``, ``vgg``, ``squeeze``).
        size: Side images are bilinearly resized to first (0 keeps their size).
    """

    def __init__(
        self,
        net: str = "alex",
        *,
        size: int = 64,
        device: str | torch.device | None = None,
        torch_home: str | None = None,
    ):
        import lpips

        if net not in LPIPS_TRUNKS:
            raise ValueError(f"net: must be one of {', '.join(LPIPS_TRUNKS)}, got {net!r}")
        head = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        self.weights: Weights = with_lpips_head(locate(LPIPS_TRUNKS[net], torch_home), net, head)
        self.head_sha256 = sha256_file(head)
        self.net = net
        self.size = size
        self.device = resolve_device(device)
        with using_hub_dir(torch_home), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained" notice
            self.model = lpips.LPIPS(net=net, verbose=False).to(self.device).eval()
        self.scales = []
        for lin in self.model.lins:
            weight = lin.model[-1].weight.detach().flatten()
            if bool((weight < 0).any()):
                raise ValueError(f"net: LPIPS {net} has negative channel weights; cannot embed")
            self.scales.append(weight.sqrt())

    @property
    def key(self) -> str:
        return f"lpips-{self.net}-{self.weights.sha256[:16]}-{self.head_sha256[:8]}-{self.size}"

    def kinds(self) -> list[str]:
        return ["lpips"]

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """The [0, 1] images as LPIPS sees them: resized to ``size`` (if set)."""
        if self.size and tuple(batch.shape[-2:]) != (self.size, self.size):
            batch = F.interpolate(
                batch, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return batch

    @torch.no_grad()
    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        import lpips

        x = self.prepare(batch.to(self.device)) * 2 - 1
        outs = self.model.net.forward(self.model.scaling_layer(x))
        parts = []
        for out, scale in zip(outs, self.scales, strict=True):
            normalised = lpips.normalize_tensor(out)
            h, w = normalised.shape[-2:]
            parts.append((normalised * (scale / (h * w) ** 0.5)[None, :, None, None]).flatten(1))
        return {"lpips": torch.cat(parts, dim=1)}

    def extract(
        self,
        items: Sequence[ImageItem],
        cache: FeatureCache,
        batch_size: int = 50,
        on_progress: Progress | None = None,
        loader_threads: int = LOADER_THREADS,
    ) -> dict[str, NDArray[np.float32]]:
        return _extract(self, items, cache, batch_size, on_progress, loader_threads)


def _extract(
    backbone: InceptionFeatures | LpipsEmbedder,
    items: Sequence[ImageItem],
    cache: FeatureCache,
    batch_size: int,
    on_progress: Progress | None,
    loader_threads: int = LOADER_THREADS,
) -> dict[str, NDArray[np.float32]]:
    kinds = backbone.kinds()
    found: dict[str, list[NDArray[np.float32] | None]] = {k: [None] * len(items) for k in kinds}
    todo: list[int] = []
    for index, item in enumerate(items):
        cached = {k: cache.get(f"{backbone.key}-{k}", item.sha256) for k in kinds}
        if any(v is None for v in cached.values()):
            todo.append(index)
        else:
            for k, v in cached.items():
                found[k][index] = v
    done = len(items) - len(todo)
    if on_progress:
        on_progress(done, len(items))
    for group in _batches(items, todo, batch_size, loader_threads):
        batch = torch.from_numpy(np.stack([array for _, array in group]))
        outputs = backbone.forward(batch)
        for k in kinds:
            values = outputs[k].float().cpu().numpy()
            for row, (index, _) in enumerate(group):
                found[k][index] = values[row]
                cache.put(f"{backbone.key}-{k}", items[index].sha256, values[row])
        done += len(group)
        if on_progress:
            on_progress(done, len(items))
    result: dict[str, NDArray[np.float32]] = {}
    for k in kinds:
        rows = found[k]
        result[k] = (
            np.stack([r for r in rows if r is not None]).astype(np.float32)
            if items
            else np.zeros((0, 0), dtype=np.float32)
        )
    return result
