"""`make bench`: the delivery pipeline against a plain loop (the floor), and the API at 1,000,000 rows (docs/benchmarks.md)."""
