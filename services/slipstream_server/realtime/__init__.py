"""realtime: streams run status changes to websocket subscribers."""
