"""Health: the monitor, Prometheus metrics and its local HTTP server, system stats, drift."""
