"""A browser page that triggers a task and follows it with only a public access token."""
