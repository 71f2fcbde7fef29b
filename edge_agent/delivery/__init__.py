"""Delivery of events: what a camera's tracks, zones and lines produce goes to MQTT.

`camera.CameraDelivery` is the one object the pipeline calls per frame; `payloads` holds
the JSON bodies (docs/events.md), `snapshots` the JPEG per event, `detections_mode` the
choice of which detection frames are published.
"""
