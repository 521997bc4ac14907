"""The durable queue: task files, task folders, state, the journal."""
