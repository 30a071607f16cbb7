"""The example sites (Lam Phaya, Nakhon Chai Si), installed as the data package ``floodwatch.sites``.

Only data lives here: each site's TOML file and its map (GeoJSON). An installed
floodwatch finds them with ``importlib.resources.files("floodwatch.sites")``;
a municipality's own site lives in /etc/floodwatch (``floodwatch site init``).
"""
