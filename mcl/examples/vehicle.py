"""Message types of the small vehicle in ``sample_logs/vehicle`` (made by ``tools/make_sample_logs.py``).

Import this module before decoding that log to get these classes instead of
:class:`~mcl.GenericMessage`::

    import mcl, mcl.examples.vehicle
    with mcl.open_log("sample_logs/vehicle", topics=["gps"]) as log:
        fix = mcl.decode(next(iter(log)).payload)     # a GpsFix
"""

from __future__ import annotations

from mcl.message import Message

__all__ = ["ImuSample", "GpsFix", "CameraFrame"]


class ImuSample(Message):
    """An inertial measurement (100 Hz on topic ``imu``)."""

    fields = (
        "accel",  # float64[3], m/s², body frame (x forward, y left, z up)
        "gyro",  # float64[3], rad/s
        "orientation",  # float64[4], unit quaternion (w, x, y, z)
        "temperature",  # float, °C
    )


class GpsFix(Message):
    """A GNSS fix (10 Hz on topic ``gps``)."""

    fields = (
        "latitude",  # float, degrees
        "longitude",  # float, degrees
        "altitude",  # float, m above the ellipsoid
        "speed",  # float, m/s over ground
        "heading",  # float, degrees from north, clockwise
        "satellites",  # int
        "fix",  # str: "none", "2d", "3d", "rtk"
        "covariance",  # float64[3, 3], m², east-north-up
    )


class CameraFrame(Message):
    """Metadata of one image of the front camera (30 Hz on topic ``camera/front``); no pixels."""

    fields = (
        "frame_id",  # int, counts from 0
        "width",  # int, pixels
        "height",  # int, pixels
        "encoding",  # str, e.g. "bayer_rggb8"
        "exposure_us",  # int, microseconds
        "gain_db",  # float
        "size_bytes",  # int, size of the image that was not stored
        "histogram",  # uint32[16], brightness histogram
    )
