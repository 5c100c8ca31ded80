"""Test tooling: synthetic sessions and a headless browser for the HTML report.

For tests and benchmarks only; nothing in the product imports it (an import-linter contract
checks that).
"""
