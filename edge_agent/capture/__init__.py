"""Capture: cameras (files, RTSP, USB, CSI, GStreamer) into bounded frame queues."""
