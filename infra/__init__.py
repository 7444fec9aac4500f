"""Installs, starts, stops and checks the services OMS needs: Kafka, Redis, ClickHouse (chDB or a server)."""
