"""Inference backends and model I/O; imports nothing from edge_agent."""
