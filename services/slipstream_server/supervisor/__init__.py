"""supervisor: runs attempts of the tasks it serves in a warm pool of worker processes."""
