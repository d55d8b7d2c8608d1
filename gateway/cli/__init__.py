"""The ``maas`` command: serve, tenants, keys, usage, chips, node resources, and the client for a running
gateway's admin routes."""
