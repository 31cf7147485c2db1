"""The qualification queue: leads whose score needs a person's (or an LLM's) answers."""
