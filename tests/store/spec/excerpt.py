"""Rebuild influxdb-oss-excerpt.yml from InfluxData's full contract (a development step).

    python tests/store/spec/excerpt.py ../shared/influxdb-openapi/oss.yml

Keeps the paths floodwatch's InfluxDB store uses and every component they
reference, unchanged, so the tests validate against the real contract with
nothing outside the repository.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import yaml

PATHS = ["/write", "/query", "/delete", "/health", "/ping"]
OUT = Path(__file__).with_name("influxdb-oss-excerpt.yml")


def excerpt(raw: bytes) -> str:
    spec = yaml.safe_load(raw)
    components = spec.get("components", {})
    out = {k: v for k, v in spec.items() if k not in ("paths", "components")}
    out["paths"] = {p: spec["paths"][p] for p in PATHS}
    needed: set[tuple[str, str]] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/components/"):
                    _, _, kind, name = value.split("/", 3)
                    if (kind, name) not in needed:
                        needed.add((kind, name))
                        walk(components[kind][name])
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out["paths"])
    kept: dict[str, dict] = {}
    for kind, name in sorted(needed):
        kept.setdefault(kind, {})[name] = components[kind][name]
    if "securitySchemes" in components:
        kept["securitySchemes"] = components["securitySchemes"]
    out["components"] = kept
    header = (
        "# Excerpt of InfluxData's OpenAPI contract for InfluxDB OSS 2.x (influxdata/openapi,\n"
        "# contracts/oss.yml at commit ad26a17809307a9b190d5ca0ef6d0a0f094993ff, sha256\n"
        f"# {hashlib.sha256(raw).hexdigest()}), MIT licence: the paths floodwatch uses\n"
        "# (/write, /query, /delete, /health, /ping) and every component they reference, unchanged.\n"
        "# Regenerate with tests/store/spec/excerpt.py when the contract changes.\n"
    )
    return header + yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    OUT.write_text(excerpt(Path(sys.argv[1]).read_bytes()))
