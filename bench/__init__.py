"""``seqcast-bench``: benchmarks that print a table and write JSON and a plot; see ``bench/cli.py``."""
