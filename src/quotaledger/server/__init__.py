"""The HTTP adapter: `create_app(settings)` builds the ASGI application."""
