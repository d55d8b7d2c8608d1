"""Observability: Prometheus metrics, replica utilisation and cost accrual, and the built-in dashboard's
data and page."""
