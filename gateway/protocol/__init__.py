"""The gateway's own OpenAI wire models: requests validated with pydantic, responses as typed dicts."""
