"""The platform's five services, each its own process: `python -m slipstream_server.trigger_api`,
`.queue_manager`, `.scheduler`, `.supervisor`, `.realtime` (or `slipstream worker` for a supervisor)."""
