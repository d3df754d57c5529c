"""Typed configuration of the DICOM node: one TOML file plus ``WBSPINE_*`` overrides.

Environment overrides address nested keys with a double underscore, e.g.
``WBSPINE_NODE__PORT=11112`` or ``WBSPINE_SEND__DESTINATIONS='["PACS@10.0.0.5:104"]'``
(values starting with ``[`` or ``{`` are parsed as JSON). Everything is validated once
at start; any problem raises :class:`~dicom_node.errors.ConfigError` with every field named.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dicom_node.errors import ConfigError

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2: 16 chars, no backslash
_DEST_RE = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")
_SENDER_RE = re.compile(r"^sender(?::(?P<port>\d{1,5}))?$", re.IGNORECASE)
ENV_PREFIX = "WBSPINE_"


def _check_ae(value: str) -> str:
    if not _AE_RE.match(value) or not value.strip():
        raise ValueError(f"invalid AE title {value!r} (1-16 printable characters, no backslash)")
    return value.strip()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Destination(_Model):
    """A C-STORE target. ``ae_title=None`` means 'back to the AE that sent the study'."""

    ae_title: str | None
    host: str | None
    port: int = Field(ge=1, le=65535)

    @classmethod
    def parse(cls, spec: str) -> Destination:
        """``AE@HOST:PORT`` or ``sender[:PORT]`` (the calling AE at its address, port 104 by default)."""
        if m := _SENDER_RE.match(spec.strip()):
            return cls(ae_title=None, host=None, port=int(m["port"] or 104))
        if m := _DEST_RE.match(spec.strip()):
            return cls(ae_title=_check_ae(m["ae"]), host=m["host"], port=int(m["port"]))
        raise ValueError(f"invalid destination {spec!r}: expected AE@HOST:PORT or sender[:PORT]")

    def label(self) -> str:
        return f"sender:{self.port}" if self.ae_title is None else f"{self.ae_title}@{self.host}:{self.port}"


class AllowedPeer(_Model):
    """A calling AE title allowed to associate, optionally only from one host (IP)."""

    ae_title: str
    host: str | None = None

    @classmethod
    def parse(cls, spec: str) -> AllowedPeer:
        ae, _, host = spec.partition("@")
        return cls(ae_title=_check_ae(ae), host=host or None)


class TlsConfig(_Model):
    """Optional TLS (PS3.15 B.1): server cert/key; a CA file makes client certificates mandatory."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    min_version: str = Field(default="1.2", pattern=r"^1\.[23]$")


class NodeConfig(_Model):
    ae_title: str = "WBSPINE"
    bind_address: str = "0.0.0.0"
    port: int = Field(default=11112, ge=1, le=65535)
    allowed_calling: tuple[AllowedPeer, ...] = ()
    require_called_ae: bool = True
    max_associations: int = Field(default=8, ge=1, le=256)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=60.0, gt=0)
    max_pdu_bytes: int = Field(default=262_144, ge=4096, le=16_777_216)
    #: Largest data set accepted in one C-STORE; a bigger one drops the association.
    max_instance_mb: int = Field(default=2048, ge=1, le=65536)
    #: pynetdicom's DUL reactor sleeps this long when idle (its default is 1 ms, which caps
    #: throughput at ~140 instances/s); lower = faster, more CPU while associations are open.
    dul_loop_delay_s: float = Field(default=0.0002, ge=0.0, le=0.01)
    tls: TlsConfig | None = None

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return _check_ae(v)

    @field_validator("allowed_calling", mode="before")
    @classmethod
    def _peers(cls, v: Any) -> Any:
        return tuple(AllowedPeer.parse(p) if isinstance(p, str) else p for p in (v or ()))


class SpoolConfig(_Model):
    directory: Path = Path("/var/lib/wbspine/spool")
    min_free_mb: int = Field(default=2048, ge=0, description="refuse (A700) below this free space")
    max_used_percent: float = Field(default=95.0, gt=0, le=100)
    fsync: bool = True
    #: Acknowledge a C-STORE once its write-ahead journal record is fdatasynced (files and
    #: index rows follow in the background, replayed after a crash); off: file + dir fsync
    #: and an index commit per instance before the response. Needs ``fsync``.
    journal: bool = True
    #: Size of each pre-zeroed journal segment; an instance larger than this is written directly.
    journal_segment_mb: int = Field(default=64, ge=1, le=4096)


class SeriesConfig(_Model):
    #: A cleanly released series that is not consistent completes this long after the later
    #: of its release and the listener's start (:mod:`dicom_node.series`).
    idle_timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=0.2, gt=0)


class SendConfig(_Model):
    destinations: tuple[Destination, ...] = ()
    calling_ae_title: str = "WBSPINE"
    stl_export_dir: Path | None = None
    backoff_initial_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    #: A result still not stored this long after it was queued (or resent) is failed with the
    #: last error: transient failures are retried until then (7 days: a PACS down for a week).
    give_up_after_s: float = Field(default=7 * 86400.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("destinations", mode="before")
    @classmethod
    def _dests(cls, v: Any) -> Any:
        return tuple(Destination.parse(d) if isinstance(d, str) else d for d in (v or ()))


EngineKind = Literal["auto", "tensorrt", "ort-tensorrt", "cuda", "openvino", "cpu", "triton"]


class ProcessingConfig(_Model):
    """The processor factory, its bundle and how it runs the network.

    ``engine`` .. ``triton_model`` reach the factory as ``engine={...}`` (the appliance's
    ``EngineConfig`` fields); the appliance builds that engine once at start, so a GPU
    engine configured on a box without one stops the node with a clear error.
    """

    processor: str = Field(default="appliance.pipeline:make_processor",
                           pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    bundle: Path | None = None
    engine: EngineKind = "auto"
    threads: int | None = Field(default=None, ge=1, description="CPU engine threads (default: usable CPUs)")
    cpu_precision: Literal["f32", "bf16"] = "f32"
    triton_url: str | None = None
    triton_model: str | None = None

    @model_validator(mode="after")
    def _triton(self) -> ProcessingConfig:
        if self.engine == "triton" and not self.triton_url:
            raise ValueError("processing.engine = 'triton' needs processing.triton_url (host:port)")
        return self

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments of the appliance's ``EngineConfig``."""
        return {"kind": self.engine, "threads": self.threads, "cpu_precision": self.cpu_precision,
                "triton_url": self.triton_url, "triton_model": self.triton_model}


#: Seconds kept free inside ``stop.timeout_s`` after the drain or the job wait: aborting the
#: associations left, closing the journal and the index.
STOP_MARGIN_S = 5.0


class StopConfig(_Model):
    """SIGTERM (:meth:`dicom_node.service.NodeService.stop`): what may still finish, and for how long.

    ``timeout_s`` is the time the service manager allows (systemd ``TimeoutStopSec=30``,
    ``docker stop -t 30``); ``drain_s`` and ``job_grace_s`` run side by side and must each leave
    :data:`STOP_MARGIN_S` of it.
    """

    timeout_s: float = Field(default=30.0, gt=0)
    #: Open associations may go on storing this long; then every one still open is A-ABORTed.
    drain_s: float = Field(default=10.0, ge=0)
    #: A job running at SIGTERM may finish within this; otherwise it is requeued (``queued``)
    #: and runs from scratch at the next start.
    job_grace_s: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _fits(self) -> StopConfig:
        if max(self.drain_s, self.job_grace_s) + STOP_MARGIN_S > self.timeout_s:
            raise ValueError(f"stop.drain_s and stop.job_grace_s must each be at least {STOP_MARGIN_S:g} s"
                             " below stop.timeout_s")
        return self


class MetricsConfig(_Model):
    enabled: bool = True
    port: int | None = Field(default=9110, ge=0, le=65535, description="None disables /metrics")
    bind_address: str = "127.0.0.1"


class Config(_Model):
    node: NodeConfig = NodeConfig()
    spool: SpoolConfig = SpoolConfig()
    series: SeriesConfig = SeriesConfig()
    send: SendConfig = SendConfig()
    processing: ProcessingConfig = ProcessingConfig()
    metrics: MetricsConfig = MetricsConfig()
    stop: StopConfig = StopConfig()

    @model_validator(mode="after")
    def _backoff(self) -> Config:
        if self.send.backoff_max_s < self.send.backoff_initial_s:
            raise ValueError("send.backoff_max_s must be >= send.backoff_initial_s")
        return self


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``WBSPINE_SECTION__KEY=value`` → ``{"section": {"key": value}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        value: Any = raw
        if raw.strip()[:1] in "[{":
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name}: invalid JSON ({exc})") from None
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def build_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                 source: str = "<config>", overrides: Mapping[str, Any] | None = None) -> Config:
    """Validate file ``data`` < environment < CLI ``overrides``; ConfigError lists every problem."""
    merged = _merge(dict(data), env_overrides(os.environ if environ is None else environ))
    merged = _merge(merged, overrides or {})
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid configuration in {source}:\n" + "\n".join(lines)) from None


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None,
                defaults: Mapping[str, Any] | None = None) -> Config:
    """``defaults`` < TOML file (optional) < environment < CLI ``overrides``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return build_config(_merge(dict(defaults or {}), data), environ, str(path or "<flags>"), overrides)
