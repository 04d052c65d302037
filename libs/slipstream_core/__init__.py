"""What the SDK and the platform both need, with no server dependency: task definitions, the
supervisor <-> worker protocol (`ipc`), durations, cron and the errors the platform writes."""
