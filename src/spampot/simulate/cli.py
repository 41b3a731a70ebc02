"""``spampot simulate``: synthetic spammer traffic, offline (files) or live (a running sensor)."""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path

import click

from spampot.simulate.profile import ProfileError, load_profile, origins_ip2asn


def _profile(path: Path | None, **overrides: object):
    try:
        return load_profile(path, **overrides)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc


_PROFILE = click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="TOML profile (default: calibrated on the paper's tables).",
)


@click.group()
def simulate() -> None:
    """Synthetic spammer traffic: datasets on disk, or live traffic to a sensor on loopback."""


@simulate.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@_PROFILE
@click.option("--messages", type=int, help="Total messages (default 100,000).")
@click.option("--days", type=int, help="Days from --start (default 30).")
@click.option("--start", help="First day, YYYY-MM-DD (default the paper's 2006-06-10).")
@click.option("--seed", type=int, help="Random seed; the same seed gives the same dataset.")
@click.option(
    "--layout",
    type=click.Choice(["raw", "spool"]),
    default="raw",
    show_default=True,
    help="raw: OUT/raw/<sensor>/ as collected; spool: OUT/<sensor>/spool/ as on a sensor.",
)
@click.option(
    "--bodies",
    type=click.Choice(["none", "sample", "all"]),
    default="none",
    show_default=True,
    help="Which messages get their .eml.gz file.",
)
@click.option("--bodies-rate", type=float, default=0.01, show_default=True)
@click.option("--compress-level", type=click.IntRange(0, 9), default=6, show_default=True)
@click.option("--rotate-bytes", type=click.IntRange(min=1), default=64 * 1024 * 1024)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--counts",
    "counts_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the counts (JSON) to this file.",
)
def offline(
    out: Path,
    profile_path: Path | None,
    messages: int | None,
    days: int | None,
    start: str | None,
    seed: int | None,
    layout: str,
    bodies: str,
    bodies_rate: float,
    compress_level: int,
    rotate_bytes: int,
    jobs: int,
    counts_path: Path | None,
) -> None:
    """Write a sensor-shaped dataset under OUT; print the counts of what was made (JSON)."""
    from spampot.simulate.offline import OfflineOptions, simulate_offline

    profile = _profile(profile_path, messages=messages, days=days, start=start, seed=seed)
    opts = OfflineOptions(
        out=out,
        layout=layout,
        bodies=bodies,
        bodies_rate=bodies_rate,
        compress_level=compress_level,
        rotate_bytes=rotate_bytes,
        jobs=jobs,
    )
    began = time.perf_counter()
    counts = simulate_offline(profile, opts)
    counts["seconds"] = round(time.perf_counter() - began, 3)
    text = json.dumps(counts, indent=2)
    if counts_path is not None:
        counts_path.write_text(text + "\n")
    click.echo(text)


@simulate.command()
@_PROFILE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ip2asn", "json"]),
    default="ip2asn",
    show_default=True,
)
def origins(profile_path: Path | None, fmt: str) -> None:
    """Print the source networks the profile draws from, with their country and AS.

    ``ip2asn`` is the public ip2asn TSV format (start, end, AS number, country, name), which
    the analysis reads as an AS database: a test or a demo can build a database that agrees
    with the simulator.
    """
    profile = _profile(profile_path)
    if fmt == "ip2asn":
        sys.stdout.write(origins_ip2asn(profile))
        return
    rows = [
        {
            "country": o.country,
            "asn": o.asn,
            "as_name": o.as_name,
            "share": o.share,
            "networks": list(o.networks),
        }
        for o in profile.origins
    ]
    click.echo(json.dumps(rows, indent=1))


@simulate.command()
@_PROFILE
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The sensor's address; only loopback addresses are accepted.",
)
@click.option(
    "--config",
    "sensor_config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The sensor's configuration: its ports and whether it trusts PROXY headers.",
)
@click.option("--smtp-port", type=click.IntRange(1, 65535), multiple=True)
@click.option("--http-port", type=click.IntRange(1, 65535), multiple=True)
@click.option("--socks-port", type=click.IntRange(1, 65535), multiple=True)
@click.option("--sessions", type=click.IntRange(min=0), default=100, show_default=True)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Stop starting sessions after this many seconds.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.01),
    default=50.0,
    show_default=True,
    help="Sessions started per second, at most.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option(
    "--proxy-protocol",
    type=click.Choice(["off", "v1", "v2", "mixed"]),
    help="Present sources with PROXY headers (default: mixed if --config says the "
    "sensor trusts them, else off).",
)
@click.option("--seed", type=int)
def live(
    profile_path: Path | None,
    host: str,
    sensor_config: Path | None,
    smtp_port: tuple[int, ...],
    http_port: tuple[int, ...],
    socks_port: tuple[int, ...],
    sessions: int,
    duration: float,
    rate: float,
    concurrency: int,
    timeout: float,
    proxy_protocol: str | None,
    seed: int | None,
) -> None:
    """Drive a running sensor over loopback; print the counts of what it acknowledged (JSON)."""
    import asyncio

    from spampot.simulate.live import (
        LiveError,
        LiveOptions,
        Targets,
        plan_sessions,
        require_loopback,
        run_live,
        summarise,
    )

    profile = _profile(profile_path, seed=seed)
    smtp, http, socks = smtp_port, http_port, socks_port
    if sensor_config is not None:
        from spampot.config import ConfigError, load_config

        try:
            config = load_config(sensor_config)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        smtp = smtp or config.ports.smtp
        if config.ports.proxies:
            http = http or config.ports.http
            socks = socks or tuple(p for p in config.ports.socks if p not in http)
        if proxy_protocol is None:
            trusted = config.trusted_proxies
            ok = any(ipaddress.ip_address(host) in net for net in trusted if _same(host, net))
            proxy_protocol = "mixed" if ok else "off"
    try:
        host = require_loopback(host)
        opts = LiveOptions(
            sessions=sessions,
            duration=duration,
            rate=rate,
            concurrency=concurrency,
            timeout=timeout,
            proxy_protocol=proxy_protocol or "off",
        )
        targets = Targets(host, tuple(smtp), tuple(http), tuple(socks))
        if not (smtp or http or socks):
            raise LiveError("no port to talk to: give --config or --smtp/--http/--socks-port")
        specs = plan_sessions(profile, targets, opts.proxy_protocol)
        began = time.perf_counter()
        results = asyncio.run(run_live(specs, targets, opts))
    except LiveError as exc:
        raise click.ClickException(str(exc)) from exc
    counts = summarise(results)
    counts["seconds"] = round(time.perf_counter() - began, 3)
    counts["proxy_protocol"] = opts.proxy_protocol
    click.echo(json.dumps(counts, indent=2))


def _same(host: str, net: object) -> bool:
    return ipaddress.ip_address(host).version == getattr(net, "version", 0)
