"""Who is calling: API keys, tokens, principals and team settings."""
