"""The bridge's HTTP server: the OpenAI-compatible /v1 endpoint, the REST API, WebSocket events, /metrics and the
dashboard, on one aiohttp app (server.py builds it, routes.py lists every route)."""
