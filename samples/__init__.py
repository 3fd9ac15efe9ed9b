"""Sample content generation with PyAV and a development origin (VOD and simulated live)."""
