"""The ``wbspine`` command line. Each verb lives in its own module with a ``register``
function; heavy imports happen inside the handlers, so ``wbspine --help`` stays fast
and never imports torch."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

import functools

from appliance import __version__
from appliance import doctor, infer_cli
from appliance.errors import WbspineError
from appliance.measure import cli as measure_cli
from appliance.outputs import cli as report_cli
from appliance.phantom import cli as phantom_cli
from dicom_node import cli as node_cli
from export import cli as export_cli
from training import cli as training_cli

#: The node runs the full appliance pipeline on every completed series.
PIPELINE_PROCESSOR = "appliance.pipeline:make_processor"

#: Functions that add a subcommand (``register(subparsers)``), in help order. Training and
#: export import torch only inside their handlers.
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    phantom_cli.register,
    training_cli.register_dataset,
    training_cli.register_train,
    training_cli.register_evaluate,
    export_cli.register,
    infer_cli.register,
    measure_cli.register,
    report_cli.register,
    functools.partial(node_cli.register_serve, processor=PIPELINE_PROCESSOR),
    node_cli.register_status,
    node_cli.register_retry,
    node_cli.register_resend,
    node_cli.register_skip,
    doctor.register,
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
    level = logging.DEBUG if args.verbose else logging.INFO
    if getattr(args, "structured_logs", False):  # serve: JSON lines with the extra={...} fields
        from dicom_node.logs import setup_logging

        setup_logging(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except WbspineError as exc:
        print(f"wbspine {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
