"""The MaaS gateway: an OpenAI-compatible front over models served by Ray Serve replicas.

This package never imports torch or vLLM; engines live in ``backends``.
"""
