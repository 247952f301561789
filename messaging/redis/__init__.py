"""Redis: every key, the switch, the delivery cache, shared counts and counters, flow control."""
