"""Facts about this machine (CPU, memory, GPUs) and the tier they map to."""
