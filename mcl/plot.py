"""A picture of a log: one row per topic, message rate over time, gaps, losses and damage marked (``mcl-info --plot``).

:func:`plot_timeline` reads the log once (payloads are not decoded) and
draws, with matplotlib's Agg renderer (no display needed; the optional extra
``mcl[plot]``):

* one row per topic (the busiest :data:`MAX_ROWS` when there are more), its
  message rate (messages per second in about 200 time bins) as a filled
  curve, its last message marked with a triangle (where it went quiet);
* a *gap* wherever a topic's spacing exceeds 3x its median spacing, shaded
  orange on that topic's row (topics with fewer than 3 messages have none);
* a *lost* span, filled purple on that topic's row, wherever the recording
  missed messages of that topic: the ``loss_spans`` of the log's
  ``accounting.json`` (docs/log-format.md), from the last message received
  before the sequence gap to the one that revealed it (a loss at the head
  of a stream, time unknown, from the start of the picture);
* a *damaged* span, hatched red across every row, from the last record read
  before a damaged part of the log to the first one after it (damage found
  at open time, before any record, is counted in the title only);
* the time axis in log seconds (bottom) and UTC (top), when the log has a
  time origin, and a legend of the marks drawn.

It returns a :class:`Timeline` with what it found, so tools and tests need
not read the picture.
"""

from __future__ import annotations

import os
import warnings
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcl.exceptions import LogDamageWarning, LogError, LogExistsError, MclError

__all__ = ["Timeline", "TopicTimeline", "plot_timeline", "GAP_FACTOR", "MAX_ROWS"]

from mcl.timeutil import NS_PER_S  # noqa: E402
GAP_FACTOR = 3.0  # a spacing over GAP_FACTOR x the topic's median is a gap
MAX_ROWS = 40  # topics drawn at most (the busiest)
MAX_SPANS = 500  # gaps drawn per row at most (all are counted)
BINS = 200  # about this many rate bins across the log
LOSS_LABEL = "lost messages (sequence gaps, accounting.json)"  # the legend entry of lost spans
LOSS_GID = "mcl-lost"  # the gid of every lost-span patch (for tools reading the figure)

PathLike = str | os.PathLike[str]


@dataclass(slots=True)
class TopicTimeline:
    """One topic of the picture."""

    topic: str
    messages: int = 0
    first_ns: int | None = None  # elapsed ns
    last_ns: int | None = None
    median_spacing_ns: int | None = None  # None with fewer than 2 messages
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (start, end) elapsed ns, spacing > GAP_FACTOR x median
    losses: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end elapsed ns, messages lost) from accounting.json


@dataclass(slots=True)
class Timeline:
    """What :func:`plot_timeline` drew."""

    path: str
    origin_ns: int | None
    start_ns: int | None
    end_ns: int | None
    topics: list[TopicTimeline]
    damaged: list[tuple[int, int]]  # (start, end) elapsed ns of damaged parts between records
    damage_count: int  # damaged parts reported in all (also those before the first record)
    rows: int  # topics drawn
    figure: Any = field(default=None, repr=False, compare=False)  # the matplotlib Figure drawn (saved as the PNG)


def _require_matplotlib() -> tuple[object, object]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MclError("--plot needs matplotlib, which is not installed: pip install 'mcl[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_timeline(paths: PathLike | Iterable[PathLike], out: PathLike, *, title: str | None = None) -> Timeline:
    """Draw the timeline of a log (or of several, merged) into a new PNG file `out`; see the module docstring.

    An existing `out` is never overwritten (LogExistsError).
    """
    import numpy as np

    from mcl.log.reader import open_log

    figure_cls, canvas_cls = _require_matplotlib()
    out_path = Path(out)
    if out_path.exists():
        raise LogExistsError(out_path)
    if out_path.suffix.lower() != ".png":
        raise LogError(f"{out_path}: the picture is a PNG file; give a name ending in .png")
    path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    times: dict[str, array[int]] = {}
    damaged: list[tuple[int, int]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogDamageWarning)
        with open_log(*path_list) as reader:
            origin = reader.origin_ns
            at_open = len(caught)
            seen = at_open
            previous: int | None = None
            for elapsed, topic, _ in reader:
                if len(caught) != seen:
                    seen = len(caught)
                    damaged.append((previous if previous is not None else elapsed, elapsed))
                stamps = times.get(topic)
                if stamps is None:
                    stamps = times[topic] = array("q")
                stamps.append(elapsed)
                previous = elapsed
            if len(caught) != seen and previous is not None:
                damaged.append((previous, previous))
            damage_count = sum(1 for w in caught if issubclass(w.category, LogDamageWarning))
    for w in caught:  # say them again outside the recording: the caller (the command) shows them
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    topics = [_topic_timeline(topic, np.frombuffer(stamps, dtype=np.int64)) for topic, stamps in times.items()]
    starts = [t.first_ns for t in topics if t.first_ns is not None]
    ends = [t.last_ns for t in topics if t.last_ns is not None]
    start = min(starts) if starts else None
    end = max(ends) if ends else None
    by_topic = {t.topic: t for t in topics}
    for path in path_list:
        for topic, loss in _loss_spans(path, origin, start):
            if topic in by_topic:  # a topic with no record in the log has no row to draw it on
                by_topic[topic].losses.append(loss)
    for t in topics:
        t.losses.sort()
    drawn = sorted(topics, key=lambda t: -t.messages)[:MAX_ROWS]
    drawn.sort(key=lambda t: t.topic)
    timeline = Timeline(str(path_list[0]), origin, start, end, topics, damaged, damage_count, len(drawn))
    timeline.figure = _draw(figure_cls, canvas_cls, timeline, drawn, times, out_path, title or ", ".join(str(p) for p in path_list))
    return timeline


def _loss_spans(path: PathLike, origin_ns: int | None, start_ns: int | None) -> list[tuple[str, tuple[int, int, int]]]:
    """(topic, (start, end elapsed ns, count)) of every loss span in the accounting file of `path`.

    Hostile input: an unreadable file is one LogDamageWarning (the picture
    is drawn without losses); a span whose fields are not what
    docs/log-format.md says is skipped.
    """
    import math

    from mcl.recorder import read_accounting

    try:
        accounting = read_accounting(path)
    except LogError as exc:
        warnings.warn(LogDamageWarning(os.fspath(path), f"lost spans not drawn: {exc}"), stacklevel=3)
        return []
    if accounting is None:
        return []

    def seconds(value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > 1e10:
            return None
        return float(value)

    acc_origin = accounting.get("origin_ns")
    # the accounting counts seconds from its own origin; the picture from the log's (the earliest of several)
    shift = acc_origin - origin_ns if isinstance(acc_origin, int) and not isinstance(acc_origin, bool) and origin_ns is not None else 0
    found: list[tuple[str, tuple[int, int, int]]] = []
    for stream in accounting.get("streams", []):
        if not isinstance(stream, dict) or not isinstance(stream.get("topic"), str) or not isinstance(stream.get("loss_spans"), list):
            continue
        for span in stream["loss_spans"]:
            if not isinstance(span, dict):
                continue
            before, after, count = seconds(span.get("before")), seconds(span.get("after")), span.get("count")
            if before is None or isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                continue
            end = shift + round(before * NS_PER_S)
            begin = shift + round(after * NS_PER_S) if after is not None else min(start_ns if start_ns is not None else end, end)
            found.append((stream["topic"], (min(begin, end), end, count)))
    return found


def _topic_timeline(topic: str, stamps: object) -> TopicTimeline:
    import numpy as np

    t = np.asarray(stamps)
    result = TopicTimeline(topic, messages=int(t.size))
    if t.size:
        result.first_ns, result.last_ns = int(t[0]), int(t[-1])
    if t.size >= 2:
        spacing = np.diff(t)
        median = int(np.median(spacing))
        result.median_spacing_ns = median
        if t.size >= 3 and median > 0:
            where = np.nonzero(spacing > GAP_FACTOR * median)[0]
            result.gaps = [(int(t[i]), int(t[i + 1])) for i in where]
    return result


def _rate(stamps: Any, topic: TopicTimeline, span: int) -> tuple[Any, Any]:
    """Bin edges (s) and messages per second of one topic.

    A bin is a whole number of the topic's median spacings (at least 4, and
    about span / BINS), so a steady topic draws a flat line instead of the
    comb a bin width unrelated to its period would draw. The last bin counts
    up to one spacing after the last message.
    """
    import numpy as np

    t = np.asarray(stamps)
    first, last = int(t[0]), int(t[-1])
    median = topic.median_spacing_ns or 0
    if median <= 0:
        width = max(span // BINS, 1)
    else:
        width = median * max(4, -(-span // (BINS * median)))
    origin = first - median // 2  # messages sit mid-slot, not on the bin edges (jitter would move them across)
    n = max(1, -(-(last - origin + 1) // width))
    edges = origin + width * np.arange(n + 1, dtype=np.int64)
    counts, _ = np.histogram(t, bins=edges)
    widths = np.full(n, float(width))
    widths[-1] = min(float(width), float(last - int(edges[-2]) + max(median, 1)))
    shown = edges.astype(float)
    shown[-1] = shown[-2] + widths[-1]  # the row ends one spacing after its last message
    return shown / NS_PER_S, counts / (widths / NS_PER_S)


def _draw(
    figure_cls: object,
    canvas_cls: object,
    timeline: Timeline,
    drawn: list[TopicTimeline],
    times: dict[str, array[int]],
    out: Path,
    title: str,
) -> Any:
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    from mcl.log.record import ns_to_datetime

    rows = max(1, len(drawn))
    fig = figure_cls(figsize=(12, 1.2 + 0.9 * rows), dpi=100)  # type: ignore[operator]
    canvas_cls(fig)  # type: ignore[operator]
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    start = timeline.start_ns or 0
    end = timeline.end_ns if timeline.end_ns is not None else start
    span = max(end - start, 1)
    for ax, topic in zip(axes, drawn):
        stamps = np.frombuffer(times[topic.topic], dtype=np.int64)
        edges_s, rate = _rate(stamps, topic, span)
        ax.fill_between(edges_s, np.append(rate, rate[-1:]), step="post", alpha=0.6, color="tab:blue", linewidth=0)
        ax.step(edges_s, np.append(rate, rate[-1:]), where="post", color="tab:blue", linewidth=0.8)
        for gap_start, gap_end in topic.gaps[:MAX_SPANS]:
            ax.axvspan(gap_start / NS_PER_S, gap_end / NS_PER_S, color="tab:orange", alpha=0.35, linewidth=0)
        for loss_start, loss_end, _count in topic.losses[:MAX_SPANS]:
            patch = ax.axvspan(loss_start / NS_PER_S, max(loss_end, loss_start + span // 500) / NS_PER_S,
                               color="tab:purple", alpha=0.55, linewidth=0)
            patch.set_gid(LOSS_GID)
        if topic.last_ns is not None:
            ax.plot([topic.last_ns / NS_PER_S], [0], marker="v", color="black", markersize=6, clip_on=False)
        for d_start, d_end in timeline.damaged:
            ax.axvspan(d_start / NS_PER_S, max(d_end, d_start + span // 500) / NS_PER_S,
                       facecolor="none", edgecolor="tab:red", hatch="///", linewidth=0.8)
        name = topic.topic if topic.topic else "(empty)"
        label = f"{name}\n{topic.messages:,} msgs"
        if topic.gaps:
            label += f", {len(topic.gaps)} gap{'s' if len(topic.gaps) != 1 else ''}"
        if topic.losses:
            label += f"\n{sum(c for _, _, c in topic.losses):,} lost"
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1].set_xlabel("log time (s from the time origin); rate in messages/s")
    axes[-1].set_xlim(start / NS_PER_S, (start + span) / NS_PER_S)
    origin = timeline.origin_ns
    if origin is not None:
        def utc(seconds: float, _pos: int) -> str:
            return ns_to_datetime(origin + int(seconds * NS_PER_S)).strftime("%H:%M:%S.%f")[:-3]

        top = axes[0].secondary_xaxis("top")
        top.xaxis.set_major_formatter(FuncFormatter(utc))
        top.tick_params(labelsize=7)
        top.set_xlabel(f"UTC, {ns_to_datetime(origin + start).strftime('%Y-%m-%d')}", fontsize=8)
    notes = [f"{len(timeline.topics)} topics"]
    if timeline.rows < len(timeline.topics):
        notes.append(f"the {timeline.rows} busiest drawn")
    notes.append(f"gaps (orange): spacing > {GAP_FACTOR:g}x the topic's median")
    if any(t.losses for t in timeline.topics):
        notes.append(f"lost spans (purple): {sum(len(t.losses) for t in timeline.topics)}")
    notes.append(f"damaged parts (red hatch): {timeline.damage_count}")
    fig.suptitle(f"{title}\n" + "; ".join(notes), fontsize=9)
    legend = [Patch(color="tab:blue", alpha=0.6, label="messages/s")]
    if any(t.gaps for t in drawn):
        legend.append(Patch(color="tab:orange", alpha=0.35, label=f"gap (> {GAP_FACTOR:g}x median spacing)"))
    if any(t.losses for t in drawn):
        legend.append(Patch(color="tab:purple", alpha=0.55, label=LOSS_LABEL))
    if timeline.damaged:
        legend.append(Patch(facecolor="none", edgecolor="tab:red", hatch="///", label="damaged part of the log"))
    axes[0].legend(handles=legend, loc="upper right", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    try:
        with open(out, "xb") as fp:
            fig.savefig(fp, format="png")
    except FileExistsError:
        raise LogExistsError(out) from None
    except OSError as exc:
        out.unlink(missing_ok=True)
        raise LogError(f"{out}: cannot write the picture: {exc.strerror}") from None
    return fig
