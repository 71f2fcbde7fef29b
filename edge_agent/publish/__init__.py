"""Publish: the MQTT client, the durable spool and outbox, payloads and state topics."""
