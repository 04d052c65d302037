"""Example tasks served by `make dev`."""
