"""Command line: ``python -m generation.phantom --out DIR [options]``.

A thin wrapper around ``PhantomConfig`` and ``build_phantom_dataset``; prints one summary
line. Bad values exit with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from generation.phantom.config import PhantomConfig, parse_mix_text
from generation.phantom.dataset import build_phantom_dataset

# Config field -> option, so that validation errors name what the user typed.
_OPTIONS = {
    "count": "--count",
    "image_size": "--size",
    "seed": "--seed",
    "fst_mix": "--fst-mix",
    "diagnosis_mix": "--diagnosis-mix",
    "hair_probability": "--hair-probability",
    "max_images_per_lesion": "--max-images-per-lesion",
    "field_of_view_mm": "--fov-mm",
    "supersample": "--supersample",
}


def _mix(option: str) -> Callable[[str], dict[str, float]]:
    def parse(text: str) -> dict[str, float]:
        try:
            return parse_mix_text(text, option)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{option}: ")) from None

    parse.__name__ = "key:weight list"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m generation.phantom``."""
    defaults = PhantomConfig()
    parser = argparse.ArgumentParser(
        prog="python -m generation.phantom",
        description="Write a deterministic phantom dermoscopy dataset with ground truth.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--count",
        type=int,
        default=defaults.count,
        help=f"number of images (default {defaults.count})",
    )
    parser.add_argument(
        "--size", type=int, default=defaults.image_size, help="image side in pixels, 32-512"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="non-negative seed")
    parser.add_argument(
        "--fst-mix",
        type=_mix("--fst-mix"),
        default=None,
        help="weights per skin type, e.g. 1:0.15,2:0.35,3:0.28,4:0.175,5:0.03,6:0.015",
    )
    parser.add_argument(
        "--diagnosis-mix",
        type=_mix("--diagnosis-mix"),
        default=None,
        help="weights per diagnosis, e.g. nevus:0.55,melanoma:0.15,bcc:0.15,seborrheic_keratosis:0.15",
    )
    parser.add_argument(
        "--hair-probability",
        type=float,
        default=defaults.hair_probability,
        help=f"share of images with hair, 0-1 (default {defaults.hair_probability:g})",
    )
    parser.add_argument(
        "--max-images-per-lesion",
        type=int,
        default=defaults.max_images_per_lesion,
        help=f"most re-shots of one lesion, 1-5 (default {defaults.max_images_per_lesion})",
    )
    parser.add_argument(
        "--fov-mm", type=float, default=defaults.field_of_view_mm, help="image width in mm"
    )
    parser.add_argument(
        "--supersample",
        type=int,
        default=defaults.supersample,
        help=f"drawing supersampling factor, 1-4 (default {defaults.supersample})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0); bad arguments exit with status 2 via ``argparse``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, object] = {
        "count": args.count,
        "image_size": args.size,
        "seed": args.seed,
        "hair_probability": args.hair_probability,
        "max_images_per_lesion": args.max_images_per_lesion,
        "field_of_view_mm": args.fov_mm,
        "supersample": args.supersample,
    }
    if args.fst_mix is not None:
        values["fst_mix"] = args.fst_mix
    if args.diagnosis_mix is not None:
        values["diagnosis_mix"] = args.diagnosis_mix
    try:
        config = PhantomConfig(**values)  # type: ignore[arg-type]
    except ValueError as error:
        name, _, message = str(error).partition(": ")
        option = _OPTIONS.get(name)
        if option is None:
            parser.error(str(error))
        parser.error(f"argument {option}: {message}")
    summary = build_phantom_dataset(config, args.out)
    print(summary.line())
    return 0
