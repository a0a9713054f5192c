"""Replay of logs at their recorded timing: BufferData, ScheduleBroadcasts, Replay."""

from __future__ import annotations

from mcl.replay.buffer import BufferData
from mcl.replay.options import ReplayOptions, ReplayStatus
from mcl.replay.replay import Replay
from mcl.replay.scheduler import ScheduleBroadcasts

__all__ = ["BufferData", "ScheduleBroadcasts", "Replay", "ReplayOptions", "ReplayStatus"]
