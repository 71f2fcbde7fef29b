"""Config: the YAML loader with its limits, the typed model, value rules and located errors."""
