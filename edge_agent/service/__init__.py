"""Service: the agent's lifecycle, reload, signals, systemd notify, logs, state files."""
