"""Tenancy: tenants and their API keys (stored as hashes), with per-key and per-tenant limits."""
