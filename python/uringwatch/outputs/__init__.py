"""Writing events for people and machines: the table, JSON Lines, OCSF,
Prometheus metrics."""
