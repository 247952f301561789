"""The SMS provider: its webhook client, the wall-clock bound on a POST, what its answers mean."""
