"""Serving on Ray: the private Ray head, one Serve application per model, the replica channels and the
clients that reach replicas, and applying a catalog to a running gateway."""
