"""`make run`: the whole system on this machine, in the foreground (`python -m localrun`)."""
