"""Ingest: MQTT consumer, validation, line protocol, batched InfluxDB writes, dead letters."""
