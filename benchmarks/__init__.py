"""Benchmarks for the bulk operator (``make bench``; not part of ``make test``)."""
