"""Kubernetes manifests rendered from the catalog (``maas deploy render``), so the two cannot drift apart.

``worker_groups`` plans the Ray worker groups the catalog's deployments need (one per chip kind and pool),
``ray_cluster`` turns them into a KubeRay ``RayCluster``, ``gateway_app`` renders the gateway (Deployment,
Service, autoscaler, catalog, external stores), ``observability`` the scrape config and the dashboard, and
``render`` puts them together and writes them out. Pure functions of a ``Catalog`` and ``RenderOptions``.
"""
