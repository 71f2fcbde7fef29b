"""Home Assistant MQTT discovery: one device per box, entities on the retained topics.

`discovery` builds the configs from the agent's config (pure); `announce` publishes them
retained, again after every reconnect, and removes the ones no longer wanted, also
across restarts (docs/homeassistant.md).
"""
