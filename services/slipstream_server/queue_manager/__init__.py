"""queue-manager: wakes the supervisors when queued runs become ready by time (back-offs, rate windows)."""
