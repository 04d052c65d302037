"""Tasks the end-to-end tests run in real worker processes (a package, with an init.py)."""
