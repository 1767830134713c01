"""One benchmark: the target, pre-flight, steps, search, signals, limits and the finishing stages."""
