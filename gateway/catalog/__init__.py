"""The model catalog: the ``models.yaml`` schema, preparing weights, pools and their cost, and routing a
model name or alias to its deployment."""
