"""Home Assistant MQTT discovery settings (docs/homeassistant.md).

Top level of the config: one Home Assistant device per box, whose entities read the
retained occupancy, counts and snapshot topics the agent already publishes.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from edge_agent.config.detect import check_class_keys
from edge_agent.config.rules import Strict

DISCOVERY_PREFIX = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
"""A topic prefix without wildcards, spaces or empty levels (Home Assistant's default
is `homeassistant`)."""

CLASS_NAME = r"^[^/+#\x00-\x1f]{1,64}$"
"""A class label as it appears in payloads and snapshot topics: no MQTT wildcards."""


class HomeAssistantConfig(Strict):
    """Announce zones, lines and snapshots to Home Assistant by MQTT discovery."""

    enabled: bool = Field(
        False,
        description="true: publish retained discovery configs so Home Assistant creates a "
        "device with sensors per zone, line and camera; false: remove the ones announced.",
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=DISCOVERY_PREFIX, max_length=200,
        description="Home Assistant's discovery prefix (its MQTT integration setting).",
    )
    device_name: str | None = Field(
        None, min_length=1, max_length=100,
        description="Name of the device in Home Assistant; default: the device_id.",
    )
    classes: list[str | int] = Field(
        default_factory=list, max_length=100,
        description="Classes (names or ids, as in a zone's `classes`) that get their own "
        "entities where a zone or line has no `classes` filter, and for camera snapshots "
        "(e.g. [person, car]); default: none, so such a zone or line gets one entity for "
        "all classes together.",
    )

    @field_validator("classes")
    @classmethod
    def _class_names(cls, classes: list[str | int]) -> list[str | int]:
        """Class names end up in templates and topics: refuse wildcards and repeats."""
        check_class_keys(classes)
        for index, name in enumerate(classes):
            if (isinstance(name, str) and not re.match(CLASS_NAME, name)) or (
                    name in classes[:index]):
                raise PydanticCustomError(
                    "bad_class_name",
                    "'{name}' is not a class here (an id from 0, or a name of 1-64 "
                    "characters, no '/', '+', '#' or control characters; each class once)",
                    {"name": name, "path": (index,)},
                )
        return classes
