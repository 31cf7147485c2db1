"""HTTP API: app factory, routes, authentication."""
