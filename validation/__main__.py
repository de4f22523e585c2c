"""``python -m validation <command>``: the validation library's command lines.

Commands:
    metrics   FID, KID, IS, LPIPS, tone fidelity and memorization of two image folders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation")
    commands = parser.add_subparsers(dest="command", required=True)
    from validation.metrics import cli as metrics_cli

    metrics_cli.build_parser(
        commands.add_parser("metrics", help="quality metrics of a synthetic set")
    )
    args = parser.parse_args(argv)
    if args.command == "metrics":
        return metrics_cli.run(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
