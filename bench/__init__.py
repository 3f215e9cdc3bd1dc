"""The benchmark: `bash bench/run.sh` (see bench/harness.py)."""
