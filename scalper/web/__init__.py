"""`scalper web`: the HTTP API, /health, /ready and Prometheus /metrics, over Redis (see app.py)."""
