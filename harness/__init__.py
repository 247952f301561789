"""Real processes for the tests and the benchmark: the API, workers and beat started as the README starts them."""
