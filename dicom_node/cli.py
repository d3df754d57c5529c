"""``wbspine serve | status | retry | resend | skip``: register functions for the appliance CLI.

``dicom_node`` never imports ``appliance``: the processor is named by import path
(``processing.processor = "package.module:factory"`` in the config, or ``--processor``).
The factory is called once at start as ``factory(bundle_dir: Path | None)`` and returns
the ``process(series_dir, work_dir) -> list[Path]`` callable (it may refuse a bad bundle
by raising). The appliance wires it with
``functools.partial(dicom_node.cli.register_serve, processor="appliance.pipeline:make_processor")``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicom_node.errors import ConfigError

DEFAULT_PROCESSOR = "appliance.pipeline:make_processor"


def load_processor(spec: str, bundle: Path | None,
                   engine: dict | None = None) -> Callable[[Path, Path], list[Path]]:
    """Import ``module:factory`` and build the processor: ``factory(bundle, engine=...)``.

    A factory without an ``engine`` parameter gets only the bundle; configuring a
    non-default engine for it is an error rather than silently ignored.
    """
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"processor {spec!r} cannot be imported: {exc}") from None
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        params = {}
    takes_engine = "engine" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if takes_engine and engine is not None:
        process = factory(bundle, engine=engine)
    elif engine is not None and any(v not in (None, "auto", "f32") for v in engine.values()):
        raise ConfigError(f"processor {spec!r} takes no engine settings, but processing.engine/threads/"
                          f"cpu_precision/triton_* are set: {engine}")
    else:
        process = factory(bundle)
    if not callable(process):
        raise ConfigError(f"processor factory {spec!r} did not return a callable")
    return process


def register_serve(sub: argparse._SubParsersAction, processor: str | None = None) -> None:
    p = sub.add_parser("serve", help="run the DICOM node (receive, process, send back)",
                       description="Run the DICOM node. Flags override the config file and WBSPINE_* "
                                   "environment variables.")
    p.add_argument("--config", type=Path, help="TOML configuration (see deploy/node.example.toml)")
    p.add_argument("--ae-title", help="our AE title")
    p.add_argument("--port", type=int, help="DICOM port")
    p.add_argument("--bind", help="bind address")
    p.add_argument("--spool", type=Path, help="spool folder (instances, index, work)")
    p.add_argument("--bundle", type=Path, help="model bundle folder given to the processor")
    p.add_argument("--processor", help="processor factory as module:function")
    p.add_argument("--engine", help="inference engine given to the processor (processing.engine: auto, "
                                    "tensorrt, ort-tensorrt, cuda, openvino, cpu, triton)")
    p.add_argument("--destination", action="append", default=[], metavar="AE@HOST:PORT",
                   help="result destination (repeatable); 'sender[:PORT]' = back to the sender")
    p.add_argument("--allow-calling-ae", action="append", default=[], metavar="AE[@HOST]",
                   help="allowed calling AE (repeatable); none = any, with a warning")
    p.add_argument("--idle-timeout", type=float, help="series idle timeout in seconds")
    p.add_argument("--metrics-port", type=int, help="HTTP port for /metrics and /healthz (0 = any)")
    p.add_argument("--stl-dir", type=Path, help="folder for STL files (3D printing)")
    # structured_logs: the CLI that runs this verb logs JSON lines (dicom_node.logs), extra fields kept.
    p.set_defaults(handler=_serve, default_processor=processor or DEFAULT_PROCESSOR, structured_logs=True)


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, dict[str, Any]] = {"node": {}, "spool": {}, "send": {}, "processing": {},
                                    "series": {}, "metrics": {}}
    for value, section, key in ((args.ae_title, "node", "ae_title"), (args.port, "node", "port"),
                                (args.bind, "node", "bind_address"), (args.spool, "spool", "directory"),
                                (args.bundle, "processing", "bundle"),
                                (args.processor, "processing", "processor"),
                                (args.engine, "processing", "engine"),
                                (args.idle_timeout, "series", "idle_timeout_s"),
                                (args.metrics_port, "metrics", "port"),
                                (args.stl_dir, "send", "stl_export_dir")):
        if value is not None:
            o[section][key] = str(value) if isinstance(value, Path) else value
    if args.destination:
        o["send"]["destinations"] = list(args.destination)
    if args.allow_calling_ae:
        o["node"]["allowed_calling"] = list(args.allow_calling_ae)
    return {k: v for k, v in o.items() if v}


def _serve(args: argparse.Namespace) -> int:
    from dicom_node.config import load_config
    from dicom_node.service import NodeService

    cfg = load_config(args.config, _flag_overrides(args),
                      defaults={"processing": {"processor": args.default_processor}})
    process = load_processor(cfg.processing.processor, cfg.processing.bundle, cfg.processing.engine_options())
    NodeService(cfg, process).serve_forever()
    return 0


def register_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="list studies, jobs and results waiting or failed in the outbox")
    p.add_argument("--spool", type=Path, required=True, help="spool folder")
    p.set_defaults(handler=_status)


#: ``wbspine status`` lists each result not yet sent up to this many; beyond it, one line
#: per (job, destination) with counts per state.
OUTBOX_DETAIL_MAX = 30


def _status(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime, timezone

    from dicom_node.service import spool_index

    index = spool_index(args.spool)
    fmt = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if t else "-"  # noqa: E731
    print("STUDIES")
    for r in index.list_studies():
        print(f"  {r['study_uid']}  series={r['n_series']} instances={r['n_instances']} "
              f"last={fmt(r['last_received'])}")
    print("SERIES RECEIVING")
    for line in receiving_lines(index, time.time()):
        print(f"  {line}")
    print("JOBS")
    for r in index.list_jobs():
        reason = f"  reason: {r['reason']}" if r["reason"] else ""
        extra = "".join(f" {k}={r[k]}" for k in ("failed", "skipped") if r[k])
        extra += f" supersedes=#{r['supersedes']}" if r["supersedes"] else ""
        print(f"  #{r['id']:<5} {r['state']:<8} series={r['series_uid']} sent={r['sent']} "
              f"pending={r['pending']}{extra} updated={fmt(r['updated_at'])}{reason}")
    print("OUTBOX")
    for line in outbox_lines(index.list_outbox(), time.time()):
        print(f"  {line}")
    index.close()
    return 0


def receiving_lines(index, now: float) -> list[str]:
    """``wbspine status`` lines for series not complete: delivered (waiting for the idle
    settle) or not (no clean release yet: the scanner must send it again)."""
    from dicom_node.outbox import human_duration
    from dicom_node.series import delivered

    lines = []
    for r in index.receiving_series():
        n = index.query("SELECT COUNT(*) FROM instances WHERE series_uid=?", (r["series_uid"],))[0][0]
        wait = ("released, waiting for the idle settle" if delivered(r) else
                "not delivered: its association did not end in a clean release (aborted, refused,"
                " interrupted); waiting for the scanner to send it again")
        lines.append(f"{r['series_uid']}  instances={n} last={human_duration(now - r['last_received'])} ago  {wait}")
    return lines


def outbox_lines(rows: list, now: float, detail_max: int = OUTBOX_DETAIL_MAX) -> list[str]:
    """``wbspine status`` lines for outbox rows not sent: one per row, or grouped when many."""
    from pydicom.uid import UID

    from dicom_node.outbox import human_duration

    def when(row) -> str:
        if row["state"] != "pending":
            return "-"
        delta = row["next_attempt_at"] - now
        return "now" if delta <= 0 else f"in {human_duration(delta)}"

    if len(rows) <= detail_max:
        out = []
        for r in rows:
            kind = UID(r["sop_class"]).name if r["sop_class"] else "?"
            error = f"  last error: {r['last_error']}" if r["last_error"] else ""
            out.append(f"#{r['job_id']:<5} {r['destination']}  {r['state']:<7} {kind}  attempts={r['attempts']}"
                       f" next={when(r)}{error}")
        return out
    groups: dict[tuple[int, str], list] = {}
    for r in rows:
        groups.setdefault((r["job_id"], r["destination"]), []).append(r)
    out = []
    for (job, dest), rs in groups.items():
        counts = " ".join(f"{s}={n}" for s in ("pending", "failed", "skipped")
                          if (n := sum(r["state"] == s for r in rs)))
        pending = [r for r in rs if r["state"] == "pending"]
        nxt = when(min(pending, key=lambda r: r["next_attempt_at"])) if pending else "-"
        last = next((r["last_error"] for r in reversed(rs) if r["last_error"]), None)
        error = f"  last error: {last}" if last else ""
        out.append(f"#{job:<5} {dest}  {counts} attempts={max(r['attempts'] for r in rs)} next={nxt}{error}")
    return out


def register_retry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retry", help="process a job again from its input series (new results; "
                                     "to send the same results again use resend)")
    p.add_argument("job", type=int, help="job number (see wbspine status)")
    p.add_argument("--spool", type=Path, required=True, help="spool folder")
    p.set_defaults(handler=_retry)


def _retry(args: argparse.Namespace) -> int:
    from dicom_node.jobs import retry
    from dicom_node.service import spool_index

    index = spool_index(args.spool)
    try:
        retry(index, args.job)
    finally:
        index.close()
    print(f"job {args.job} queued")
    return 0


def register_resend(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resend", help="send a job's failed (or all) results again now, without "
                                      "reprocessing (a running node picks them up)")
    p.add_argument("job", type=int, help="job number (see wbspine status)")
    p.add_argument("--spool", type=Path, required=True, help="spool folder")
    p.add_argument("--destination", metavar="AE@HOST:PORT", help="only this destination (as in status)")
    p.add_argument("--all", action="store_true", help="also results already sent or skipped")
    p.set_defaults(handler=_resend)


def _resend(args: argparse.Namespace) -> int:
    from dicom_node.jobs import resend
    from dicom_node.service import spool_index

    index = spool_index(args.spool)
    try:
        n = resend(index, args.job, args.destination, everything=args.all)
    finally:
        index.close()
    print(f"job {args.job}: {n} result(s) queued for sending")
    return 0


def register_skip(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("skip", help="never send a job's pending results (state skipped); the job settles")
    p.add_argument("job", type=int, help="job number (see wbspine status)")
    p.add_argument("--spool", type=Path, required=True, help="spool folder")
    p.add_argument("--destination", metavar="AE@HOST:PORT", help="only this destination (as in status)")
    p.add_argument("--failed", action="store_true", help="also failed results (the job then reads done)")
    p.set_defaults(handler=_skip)


def _skip(args: argparse.Namespace) -> int:
    from dicom_node.jobs import skip
    from dicom_node.service import spool_index

    index = spool_index(args.spool)
    try:
        n = skip(index, args.job, args.destination, failed_too=args.failed)
    finally:
        index.close()
    print(f"job {args.job}: {n} result(s) skipped")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """All the node's verbs with the default processor path."""
    register_serve(sub)
    register_status(sub)
    register_retry(sub)
    register_resend(sub)
    register_skip(sub)


def main(argv: list[str] | None = None) -> int:
    """``python -m dicom_node``: the same verbs without the appliance CLI."""
    from dicom_node.errors import WbspineError
    from dicom_node.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m dicom_node")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.handler(args) or 0)
    except WbspineError as exc:
        print(f"{args.command}: error: {exc}", file=__import__("sys").stderr)
        return 2
