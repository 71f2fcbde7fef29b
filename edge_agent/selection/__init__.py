"""Selection: probe the hardware, order the backends, load the first that works."""
