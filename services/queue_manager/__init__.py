"""queue-manager: assigns ready runs to workers with free slots, in queue order."""
