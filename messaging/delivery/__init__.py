"""The delivery rules and the ports they talk to: no driver, no adapter."""
