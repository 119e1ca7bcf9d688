"""Transports: the WebSocket endpoint and the HTTP API, both thin."""
