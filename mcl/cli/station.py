"""mcl-station: run a recording station (runners, recorders, replays, bus, offload) from a TOML file, and talk to it.

  mcl-station run STATION.toml        run in the foreground until SIGINT / SIGTERM (SIGHUP reloads)
  mcl-station check STATION.toml      validate (runner classes imported) and print the plan
  mcl-station status [--json]         the running station's units
  mcl-station start|stop|restart NAME one unit
  mcl-station reload                  re-read the TOML (also done when it changes)
  mcl-station send NAME COMMAND [--data JSON]

The running station is found with --run-dir DIR or --config STATION.toml
(its [station] run_dir). Exit status 1 with one line when no station runs there.

Examples:
  mcl-station check hive.toml
  mcl-station run hive.toml
  mcl-station status --config hive.toml --json
  mcl-station send scale tare --config hive.toml --data '{"grams": 0}'
  mcl-station stop audio --run-dir run
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mcl.cli.common import StopSignals, make_parser, positive_seconds, run_main, whole_numbers
from mcl.jsonform import dumps as dumps_json
from mcl.timeutil import NS_PER_S

__all__ = ["add_arguments", "main", "run"]

PROG = "mcl-station"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands of mcl-station."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("run", help="run a station in the foreground")
    p.add_argument("config", metavar="STATION.toml", type=Path)
    p.add_argument("--quiet", "-q", action="store_true", help="station log to the file only, not to stderr")
    p = sub.add_parser("check", help="validate a station file and print its plan")
    p.add_argument("config", metavar="STATION.toml", type=Path)
    p.add_argument("--sessions", type=whole_numbers(1, 1000), default=3, metavar="N", help="capture windows shown per scheduled unit (default: 3)")
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.add_argument("--no-import", action="store_true", help="do not import the runner classes (their modules run code when imported)")

    def where(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--run-dir", type=Path, metavar="DIR", help="the station's run directory")
        group.add_argument("--config", type=Path, metavar="STATION.toml", help="the station's file (for its run_dir)")
        p.add_argument("--timeout", type=positive_seconds, default=15.0, metavar="S", help="seconds to wait for the station's reply (default: 15)")

    p = sub.add_parser("status", help="the running station's units")
    where(p)
    p.add_argument("--json", action="store_true", help="as JSON")
    for name, text in (("start", "start a unit (resume its schedule)"), ("stop", "stop a unit (cancel its sessions)"), ("restart", "restart a unit")):
        p = sub.add_parser(name, help=text)
        p.add_argument("unit", metavar="NAME")
        where(p)
    p = sub.add_parser("reload", help="re-read the station file")
    where(p)
    p = sub.add_parser("send", help="send a command to a unit and print its reply")
    p.add_argument("unit", metavar="NAME")
    p.add_argument("unit_command", metavar="COMMAND")
    p.add_argument("--data", metavar="JSON", help="the command's data (JSON)")
    where(p)


def main(argv: list[str] | None = None) -> int:
    """Run mcl-station with `argv`; returns the exit status."""
    parser = make_parser(PROG, __doc__, add_arguments)
    return run_main(lambda: _main(parser, parser.parse_args(argv)), parser.prog)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "check":
        return _check(args)
    return _talk(parser, args)


# -- run ----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from mcl.station import Station, StationConfigError

    station = Station(args.config, log_to_stderr=not args.quiet)
    reload = threading.Event()
    with StopSignals(on_hup=reload.set) as signals:
        station.start()
        try:
            while not signals.event.wait(0.5):
                if reload.is_set():
                    reload.clear()
                    try:
                        station.reload()
                    except StationConfigError:
                        pass  # logged by the station; everything keeps running
        finally:
            station.stop()
    return 0


# -- check --------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from mcl.cli.common import format_utc
    from mcl.station import load_config
    from mcl.station.schedule import next_sessions

    config = load_config(args.config)
    if not args.no_import:
        _check_classes(config)
    now = time.time_ns()
    plan: list[dict[str, Any]] = []
    for u in config.units:
        entry: dict[str, Any] = {"name": u.name, "kind": u.kind, "auto_start": u.auto_start, "summary": _summary(u)}
        if u.schedule is not None:
            entry["sessions"] = [
                {"start": format_utc(s.start_ns), "end": None if s.end_ns is None else format_utc(s.end_ns)}
                for s in next_sessions(u.schedule, now, max(1, args.sessions))
            ]
        plan.append(entry)
    if args.json:
        print(dumps_json({"name": config.name, "config": str(config.path), "run_dir": str(config.run_dir), "bus": config.bus, "min_free": config.min_free, "units": plan}, indent=2))
        return 0
    print(f"station {config.name!r}: {config.path} is valid; run dir {config.run_dir}; bus {config.bus or 'default'}")
    for entry in plan:
        start = "" if entry["auto_start"] else " (auto_start = false)"
        print(f"  {entry['name']:<16} {entry['kind']:<9} {entry['summary']}{start}")
        for s in entry.get("sessions", []):
            print(f"  {'':<16} {'':<9} session {s['start']} .. {s['end'] or 'open'}")
        if "sessions" in entry and not entry["sessions"]:
            print(f"  {'':<16} {'':<9} no session left in its schedule")
    return 0


def _check_classes(config: Any) -> None:
    """Import the class of every runner (as its unit would): a missing one is an error of the file."""
    from mcl.station import StationConfigError
    from mcl.station.config import RunnerOptions
    from mcl.station.units import check_runner_class

    for u in config.units:
        if isinstance(u.options, RunnerOptions):
            reason = check_runner_class(u.options)
            if reason is not None:
                raise StationConfigError(reason, path=config.path, unit=u.name, key="class")


def _summary(unit: Any) -> str:
    from mcl.station.config import BusOptions, OffloadOptions, RecorderOptions, ReplayUnitOptions, RunnerOptions

    o = unit.options
    if isinstance(o, RunnerOptions):
        return f"{o.cls} every {o.period_ns / NS_PER_S:g} s"
    if isinstance(o, RecorderOptions):
        return f"{' '.join(o.topics) if o.topics else 'all topics'} -> {o.out}"
    if isinstance(o, ReplayUnitOptions):
        return f"{o.log}{' (loop)' if o.loop else ''}"
    if isinstance(o, BusOptions):
        return f"serves {o.bind}"
    if isinstance(o, OffloadOptions):
        return f"{o.source} -> {o.destination}, keep local {o.keep_local_ns / NS_PER_S:g} s"
    return ""


# -- talking to a running station --------------------------------------------------------------


def _talk(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from mcl.station import load_config
    from mcl.station.control import ControlClient

    run_dir = args.run_dir if args.run_dir is not None else load_config(args.config).run_dir
    fields: dict[str, Any] = {}
    if args.command in ("start", "stop", "restart", "send"):
        fields["unit"] = args.unit
    if args.command == "send":
        fields["command"] = args.unit_command
        if args.data is not None:
            try:
                fields["data"] = json.loads(args.data)
            except ValueError as exc:
                parser.error(f"--data is not JSON: {exc}")
        fields["timeout"] = min(60.0, args.timeout)
    wait = args.timeout + 5
    if args.command in ("stop", "restart"):
        wait = max(wait, 50.0)  # a unit gets 15 s to stop cleanly, then SIGTERM, then SIGKILL
    with ControlClient(run_dir, timeout=wait) as client:
        result = client.request(args.command, **fields)
    if args.command == "status":
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            _print_status(result)
    elif args.command == "send":
        print(json.dumps(result))
    elif args.command == "reload":
        print(f"reloaded: added {', '.join(result['added']) or '-'}; removed {', '.join(result['removed']) or '-'}; changed {', '.join(result['changed']) or '-'}")
    else:
        print(f"{result['name']}: {result['state']}" + (f" (pid {result['pid']})" if result.get("pid") else ""))
    return 0


def _print_status(st: dict[str, Any]) -> None:
    print(f"station {st['name']!r} (pid {st['pid']}, {st['config'] or 'dict'}, since {st['started']})")
    if st.get("reload_error"):
        print(f"  reload refused: {st['reload_error']}")
    rows = [("unit", "kind", "state", "pid", "restarts", "errors", "messages", "lost", "next start", "log / note / last error")]
    for u in st["units"]:
        info = u.get("note") or u.get("log") or ""
        if u.get("last_error"):
            info = f"{info}  last error: {u['last_error']}".strip()
        rows.append((u["name"], u["kind"], u["state"], str(u["pid"] or "-"), str(u["restarts"]), str(u["errors"]), str(u["messages"]), str(u["lost"]), u["next_start"] or "-", info))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])


if __name__ == "__main__":
    run()
