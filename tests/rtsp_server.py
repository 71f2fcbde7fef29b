"""A real RTSP camera for tests: GStreamer's RTSP server serving one H.264 file.

Run by tests/rtsp.py with the system /usr/bin/python3, where Debian's `gi` lives (a venv
does not see it). Not a test module and not imported by the tests themselves.

    /usr/bin/python3 tests/rtsp_server.py FILE PORT MOUNT loop|once

loop: FILE is an Annex-B H.264 elementary stream without B-frames (tests/rtsp.py makes
      one); multifilesrc re-reads it forever and h264parse keeps the timestamps running,
      so the camera never ends. A raw stream carries no PTS, and RTP needs them, so a pad
      probe copies DTS to PTS (exact because the stream has no B-frames).
once: FILE is an MP4; served as is and the stream ends at the end of the file.
"""

from __future__ import annotations

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def _pts_from_dts(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    buffer = info.get_buffer()
    if buffer is not None and buffer.pts == Gst.CLOCK_TIME_NONE:
        buffer.pts = buffer.dts
    return Gst.PadProbeReturn.OK


def _on_media_configure(
    _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia
) -> None:
    parse = media.get_element().get_by_name("parse")
    parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, _pts_from_dts)


def main() -> int:
    path, port, mount, mode = sys.argv[1:5]
    Gst.init(None)
    if mode == "loop":
        source = f'multifilesrc location="{path}" loop=true ! h264parse name=parse'
    else:
        source = f'filesrc location="{path}" ! qtdemux ! h264parse name=parse'
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(f"( {source} ! rtph264pay name=pay0 pt=96 config-interval=1 )")
    factory.set_shared(True)
    if mode == "loop":
        factory.connect("media-configure", _on_media_configure)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"serving {path} at rtsp://127.0.0.1:{port}{mount} ({mode})", file=sys.stderr, flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
