"""The qualification queue and the LLM qualifier against real servers."""
