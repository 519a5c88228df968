"""In-app front door."""
