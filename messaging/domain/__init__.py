"""The message, its states and the rules its content meets: no I/O."""
