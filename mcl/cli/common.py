"""Plumbing shared by every mcl command: parser, error boundary, warnings, JSON.

Each command module looks like this::

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(...)

    def main(argv: list[str] | None = None) -> int:
        parser = make_parser("mcl-thing", __doc__, add_arguments)
        return run_main(lambda: _thing(parser.parse_args(argv)), parser.prog)

    def run() -> None:
        sys.exit(main())

:func:`run_main` is the error boundary: an :class:`~mcl.MclError` or an
``OSError`` becomes one line ``mcl-thing: error: <message>`` on stderr and exit 1;
argparse errors exit 2 (its usage line and message); ``--help`` exits 0;
Ctrl-C exits 130 without a traceback; a closed output pipe (``| head``)
exits 141 quietly. While the command runs, every
:class:`~mcl.LogDamageWarning` is printed as ``mcl-thing: warning: <message>``
on stderr, and so is every warning the bus logs (the ``mcl.network`` logger:
``mcl-thing: warning: ...``, ``mcl-thing: error: ...``); argparse's own
errors already read ``mcl-thing: error: ...``.

:class:`StopSignals` is the one signal policy of the long-running commands
(mcl-replay, mcl-bus, mcl-dump, mcl-export, mcl-foxglove, mcl-station run):
SIGINT, SIGTERM and SIGHUP (a closed terminal) all stop the command cleanly;
only mcl-station run, a daemon, takes SIGHUP as "reload the configuration".
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import datetime as _dt
import io
import logging
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import IO, Any

from mcl.exceptions import LogDamageWarning, LogError, MclError

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "make_parser",
    "run_main",
    "StopSignals",
    "STOP_SIGNALS",
    "print_error",
    "print_warning",
    "print_damage_warnings",
    "LineFormatter",
    "seconds",
    "non_negative_seconds",
    "positive_seconds",
    "positive_number",
    "megabytes",
    "whole_number",
    "whole_numbers",
    "positive_int",
    "queue_length",
    "comma_list",
    "check_topics",
    "format_utc",
    "format_size",
    "format_seconds",
]

EXIT_OK = 0
EXIT_ERROR = 1  # bad input: MclError / OSError, one line on stderr
EXIT_USAGE = 2  # bad arguments (argparse)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE)


def make_parser(
    prog: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """An argument parser for `prog`: description from the module docstring, ``--version``.

    The first line of `doc` is the description; the rest (if any) is shown
    after the options as the epilog.
    """
    from mcl import __version__

    first, _, rest = (doc or "").strip().partition("\n")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=first or None,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s (mcl {__version__})")
    if add_arguments is not None:
        add_arguments(parser)
    return parser


# The command whose lines these are: set by run_main for its thread (commands run
# in threads in tests), or process-wide by a worker (print_damage_warnings).
_program: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcl_program", default=None)
_process_program: str | None = None


def _line(kind: str | None, message: object, prog: str | None = None) -> str:
    """``PROG: KIND: message`` on one line; PROG is `prog` or the current command's (left out when none)."""
    prog = prog or _program.get() or _process_program
    head = f"{prog}: " if prog else ""
    return head + (f"{kind}: " if kind else "") + " ".join(str(message).split("\n"))


def print_error(message: object, file: IO[str] | None = None) -> None:
    """``mcl-NAME: error: <message>`` on one line of stderr."""
    _print_line("error", message, file)


def print_warning(message: object, file: IO[str] | None = None) -> None:
    """``mcl-NAME: warning: <message>`` on one line of stderr."""
    _print_line("warning", message, file)


def _print_line(kind: str, message: object, file: IO[str] | None) -> None:
    stream = file if file is not None else sys.stderr
    try:
        print(_line(kind, message), file=stream, flush=True)
    except (OSError, ValueError):  # stderr closed: nothing more we can say
        pass


class LineFormatter(logging.Formatter):
    """Log records as the commands' lines: ``mcl-NAME: warning: ...``, ``mcl-NAME: error: ...``, ``mcl-NAME: ...``.

    `prog` names the command; without it, the command of the current
    :func:`run_main` (or worker). Records below WARNING carry no kind.
    """

    def __init__(self, prog: str | None = None) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.ERROR:
            kind: str | None = "error"
        elif record.levelno >= logging.WARNING:
            kind = "warning"
        else:
            kind = None
        return _line(kind, super().format(record), self.prog)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
    *,
    _fallback: Callable[..., None],
) -> None:
    if issubclass(category, LogDamageWarning):
        print_warning(message, file)
    else:
        _fallback(message, category, filename, lineno, file, line)


def print_damage_warnings(prog: str | None = None) -> None:
    """Show every LogDamageWarning as one ``warning:`` line on stderr from now on (other warnings unchanged).

    ``run_main`` does it for the duration of a command; a worker process
    that reads logs for a command (the replay buffer) calls it at start-up,
    naming the command (`prog`) for every line of the process.
    """
    global _process_program
    if prog is not None:
        _process_program = prog
    fallback = warnings.showwarning

    def show(*args: Any, **kwargs: Any) -> None:
        _show_warning(*args, **kwargs, _fallback=fallback)

    warnings.showwarning = show


def run_main(body: Callable[[], int | None], prog: str) -> int:
    """Run command `prog`'s body inside the error boundary; return its exit status.

    `body` parses its arguments and does the work; it returns the exit
    status (None counts as 0). argparse's ``SystemExit`` is turned into its
    status too, so ``main(argv)`` returns (never exits) and tests can call it.
    Errors and warnings (damage, the bus's log) are lines that start
    with `prog`.
    """
    global _process_program
    token = _program.set(prog)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = _process_program
    if main_thread:  # the command of this process: also its other threads' lines (readers, monitors)
        _process_program = prog
    handler = logging.StreamHandler(_Stderr())
    handler.setLevel(logging.WARNING)
    handler.setFormatter(LineFormatter(prog))
    library_log = logging.getLogger("mcl.network")  # the station logs through its own handlers
    library_log.addHandler(handler)
    try:
        return _run_body(body)
    finally:
        library_log.removeHandler(handler)
        _program.reset(token)
        if main_thread:
            _process_program = previous


class _Stderr:
    """sys.stderr as it is when written to (tests and the commands replace it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _run_body(body: Callable[[], int | None]) -> int:
    with warnings.catch_warnings(), _paths_on_stdout():
        warnings.simplefilter("always", LogDamageWarning)
        print_damage_warnings()
        try:
            status = body()
            _flush_stdout()
            return EXIT_OK if status is None else int(status)
        except SystemExit as exc:  # argparse: --help (0), bad arguments (2)
            code = exc.code
            if code is None:
                return EXIT_OK
            if isinstance(code, int):
                return code
            print_error(code)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except MclError as exc:
            print_error(exc)
            return EXIT_ERROR
        except OSError as exc:
            print_error(_describe_os_error(exc))
            return EXIT_ERROR


@contextlib.contextmanager
def _paths_on_stdout() -> Iterator[None]:
    """Let stdout print the names the command line gave, also those that are not UTF-8.

    A file name of bytes that are not UTF-8 arrives as surrogates
    (``os.fsdecode``); printed back ("written to PATH") with the default
    strict error handler it would be a UnicodeEncodeError after the work
    is done. ``surrogateescape`` writes the original bytes, as ``ls`` does.
    """
    stream = sys.stdout
    reconfigure = getattr(stream, "reconfigure", None)
    previous = getattr(stream, "errors", None)
    if reconfigure is None or previous != "strict":
        yield
        return
    try:
        reconfigure(errors="surrogateescape")
    except (ValueError, OSError, io.UnsupportedOperation):  # not reconfigurable now: leave it as it is
        yield
        return
    try:
        yield
    finally:
        try:
            if sys.stdout is stream:
                reconfigure(errors=previous)
        except (ValueError, OSError, io.UnsupportedOperation):
            pass


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each ends a long-running command cleanly


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP ask a long-running command to stop cleanly (a context manager).

    SIGHUP (the terminal was closed) is handled like SIGTERM: without it the
    default action kills the process (and its workers, and multiprocessing's
    resource tracker) with no clean-up, leaving semaphores in /dev/shm.

    By default a signal sets :attr:`event` (and :attr:`signal`), and the
    command's loop notices it. With ``raise_exit=True`` the *first* signal
    also raises in the main thread (SIGINT: ``KeyboardInterrupt``, exit 130;
    SIGTERM / SIGHUP: ``SystemExit(128 + signum)``), so the run unwinds
    through its context managers; later signals are only recorded, so they
    never interrupt that clean-up. Handlers are installed only from the main
    thread (``main()`` called from a thread, as tests do: nothing changes)
    and the previous ones are restored on exit.
    """

    def __init__(self, *, raise_exit: bool = False, on_hup: Callable[[], None] | None = None) -> None:
        self.raise_exit = raise_exit
        self.on_hup = on_hup  # SIGHUP calls this instead of stopping (a daemon's reload: mcl-station run)
        self.event = threading.Event()
        self.signal: int | None = None  # the first signal received
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP and self.on_hup is not None:
            self.on_hup()
            return
        first = self.signal is None
        if first:
            self.signal = signum
        self.event.set()
        if first and self.raise_exit:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def _flush_stdout() -> None:
    # Flush here so a closed pipe is reported by the boundary, not at exit.
    try:
        sys.stdout.flush()
    except ValueError:  # stdout closed by the body
        pass


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests)
        pass


def _describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        return f"{os.fsdecode(exc.filename)}: {reason}"
    return reason


# -- argument types -------------------------------------------------------------------


def _quoted(text: str) -> str:
    """`text` quoted for an error line, cut to 60 characters (a 5000-character argument stays one short line)."""
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:56] + "...'"


def _max_seconds() -> float:
    """The longest span in seconds: within the int64 ns of log times and the longest wait a thread can make."""
    from mcl.timeutil import MAX_NS, NS_PER_S

    return min(MAX_NS / NS_PER_S, threading.TIMEOUT_MAX)


def seconds(text: str) -> float:
    """argparse type: a finite number of seconds (may be negative) within the int64 ns range of log times."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a finite number of seconds")
    if abs(value) > _max_seconds():
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is too long: at most {_max_seconds():g} s (mcl's times are int64 ns)")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a number of seconds of at least 1 ns (durations, intervals, timeouts), as :func:`seconds`."""
    from mcl.timeutil import NS_PER_S

    value = seconds(text)
    if not round(value * NS_PER_S) >= 1:  # 1e-300 is not zero, but it is 0 ns
        raise argparse.ArgumentTypeError(f"{_quoted(text)} must be a positive number of seconds (at least 1 ns)")
    return value


def positive_number(text: str, maximum: float = 1e12) -> float:
    """argparse type: a finite number above zero and at most `maximum` (sizes in MB, rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a number") from None
    if not 0 < value <= maximum:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} must be a positive number (at most {maximum:g})")
    return value


def megabytes(text: str) -> float:
    """argparse type: a size in megabytes (10^6 bytes) of at least one byte and within the int64 range."""
    from mcl.checks import MAX_INT64

    value = positive_number(text, MAX_INT64 / 1e6)
    if round(value * 1_000_000) < 1:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is less than one byte (the size is in MB, 10^6 bytes)")
    return value


def whole_number(text: str, minimum: int = 0, maximum: int | None = None) -> int:
    """argparse type: a whole number from `minimum` (0 by default) to `maximum` (default: the int64 range)."""
    from mcl.checks import MAX_INT64

    top = MAX_INT64 if maximum is None else maximum
    try:
        value = int(text)
    except ValueError:  # also more than 4300 digits
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} must be at least {minimum}")
    if value > top:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} must be at most {top}")
    return value


def whole_numbers(minimum: int = 0, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `minimum` to `maximum` (as :func:`whole_number`)."""

    def whole(text: str) -> int:
        return whole_number(text, minimum, maximum)

    whole.__name__ = "whole_number"
    return whole


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (counts, sizes in records), within the int64 range."""
    return whole_number(text, 1)


def queue_length(text: str) -> int:
    """argparse type: a queue bound in messages, 1 to 2^31 - 1 (ZeroMQ's high-water marks are C ints)."""
    from mcl.checks import MAX_C_INT

    return whole_number(text, 1, MAX_C_INT)


def non_negative_seconds(text: str) -> float:
    """argparse type: a finite, non-negative number of seconds."""
    value = seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is negative; give seconds >= 0")
    return value


def comma_list(text: str) -> list[str]:
    """argparse type: ``a,b,c`` to ``['a', 'b', 'c']`` (no empty items; names are UTF-8 text on the wire and on disk)."""
    items = [item.strip() for item in text.split(",")]
    if not items or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not a comma-separated list of names")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes of the command line that are not UTF-8 (os.fsdecode's surrogates)
        raise argparse.ArgumentTypeError(f"{_quoted(text)} is not UTF-8 text (names are UTF-8)") from None
    return items


class ExtendNames(argparse.Action):
    """argparse action for ``--topics a b`` and ``--topics a,b`` alike (repeatable).

    Use with ``nargs="+"`` and ``type=comma_list``: every value is a list, flattened here.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        names = list(getattr(namespace, self.dest, None) or [])
        for value in values:
            names.extend(value)
        setattr(namespace, self.dest, names)


# -- JSON -------------------------------------------------------------------------------


def check_topics(reader: Any, topics: Iterable[str] | None, seen: Collection[str] = ()) -> None:
    """Raise LogError when a topic asked for with ``--topics`` is in none of the logs.

    `reader` is an open :class:`~mcl.log.reader.LogReader`; topics in `seen`
    are known to be present (so the summaries, a scan for MCL_LOG 1.0, are
    read only when a topic was never met).
    """
    missing = [t for t in dict.fromkeys(topics or ()) if t not in seen]
    if not missing:
        return
    present: set[str] = set()
    for summary in reader.summaries():
        present.update(summary.topics)
    unknown = [t for t in missing if t not in present]
    if unknown:
        names = ", ".join(repr(t) for t in sorted(present)) or "none"
        which = "topic" if len(unknown) == 1 else "topics"
        raise LogError(f"{which} {', '.join(repr(t) for t in unknown)} not in the log (its topics: {names})")


# -- human formatting ---------------------------------------------------------------------


def format_utc(ns: int | None) -> str:
    """UTC ns since the epoch as ISO 8601 (``2024-05-01T12:00:00.123456Z``), '-' if None."""
    if ns is None:
        return "-"
    when = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=ns // 1000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_size(size: int) -> str:
    """A byte count for people: ``5.8 KiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # not reached


def format_seconds(seconds_: float) -> str:
    """Seconds for people: ``9.990 s`` or ``1 h 02 min 03.000 s``."""
    if seconds_ < 60:
        return f"{seconds_:.3f} s"
    minutes, secs = divmod(seconds_, 60)
    if minutes < 60:
        return f"{int(minutes)} min {secs:06.3f} s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours} h {minutes:02d} min {secs:06.3f} s"
