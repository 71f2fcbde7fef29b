"""Tools: the operator commands (doctor, snapshot, watch, bench, reload, probe, models).

The daemon never imports this package (tests/test_layout.py)."""
