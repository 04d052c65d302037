"""The `slipstream` command: dev, worker, migrate, gen-contract."""
