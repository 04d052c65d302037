"""scheduler: durable timers (delayed runs) and the sweeper that repairs stalled work."""
