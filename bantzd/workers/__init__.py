"""Worker processes: spawning attempts in their own process groups, and the in-task API."""
