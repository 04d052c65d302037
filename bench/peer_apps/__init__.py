"""The peers of `make bench-peers` (Celery, taskiq): run in their own venv, never imported by Slipstream."""
