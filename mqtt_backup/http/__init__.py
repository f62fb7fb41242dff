"""serve's opt-in HTTP endpoint: /healthz, /livez and /metrics (docs/metrics.md)."""
