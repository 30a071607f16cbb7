"""The time-series store: one small interface, SQLite by default, InfluxDB when configured."""
