"""Model backends: one narrow interface (``backends.base``) and the engines behind it.

Engines are imported lazily so that a machine without a given chip's toolkit can still load the catalog.
"""
