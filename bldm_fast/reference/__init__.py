"""Plain-PyTorch reference backend: one definition of the math for tests, benchmarks and readers."""
