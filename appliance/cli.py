"""The ``wbspine`` command line. Each verb lives in its own module with a ``register``
function; heavy imports happen inside the handlers, so ``wbspine --help`` stays fast
and never imports torch."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from appliance import __version__
from appliance.errors import WbspineError
from appliance.phantom import cli as phantom_cli

#: Modules that add a subcommand: ``register(subparsers)``.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    phantom_cli.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wbspine",
        description="Weight-bearing whole-spine CBCT: segmentation, spinal and pelvic "
                    "parameters, DICOM results and STL models.",
    )
    parser.add_argument("--version", action="version", version=f"wbspine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except WbspineError as exc:
        print(f"wbspine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
