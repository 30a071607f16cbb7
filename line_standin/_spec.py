"""LINE's own OpenAPI specs, loaded once, turned into request validators.

The stand-in validates request bodies against ``spec/messaging-api.yml`` and
builds webhook bodies that validate against ``spec/webhook.yml``: both are
unchanged copies of LINE's published files (see ``spec/NOTICE``).

Two things plain JSON-Schema validators get wrong about these files, fixed
here once at load time:

- ``discriminator``: OpenAPI's "look at ``type`` and validate against the
  schema it names". A JSON-Schema validator ignores the keyword, so a
  ``{"type": "text"}`` message without ``text`` would pass. We add a
  ``discriminator`` keyword that dispatches to ``mapping[value]`` and rejects
  values the mapping does not name (LINE answers 400 for an unknown type).
- The mapped schemas (``TextMessage``) include their parent (``Message``) by
  ``allOf``; with a dispatching parent that would recurse forever, so each
  child's ``allOf`` points at a copy of the parent without the discriminator.

Parsing the YAML takes about 25 ms (CSafeLoader); it happens once per process
and every :class:`LineStandIn` shares the result.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, ValidationError, validators

SPEC_DIR = Path(__file__).resolve().parent / "spec"
MESSAGING_SPEC_FILE = SPEC_DIR / "messaging-api.yml"
WEBHOOK_SPEC_FILE = SPEC_DIR / "webhook.yml"

_SCHEMA_PREFIX = "#/components/schemas/"
_BASE_SUFFIX = "__base"


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One entry of LINE's ``details`` array: what is wrong, and where (``messages[0].text``)."""

    message: str
    property: str

    def as_json(self) -> dict[str, str]:
        return {"message": self.message, "property": self.property}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_yaml(path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as handle:
        return yaml.load(handle, Loader=loader)


def _split_discriminated_parents(schemas: dict[str, Any]) -> dict[str, Any]:
    """Return ``schemas`` where mapped children include a non-dispatching copy of their parent."""
    out = copy.deepcopy(schemas)
    for name, schema in schemas.items():
        discriminator = schema.get("discriminator") if isinstance(schema, dict) else None
        if not discriminator:
            continue
        base = {k: v for k, v in copy.deepcopy(schema).items() if k != "discriminator"}
        out[name + _BASE_SUFFIX] = base
        parent_ref = _SCHEMA_PREFIX + name
        for target_ref in discriminator.get("mapping", {}).values():
            child = out.get(target_ref.removeprefix(_SCHEMA_PREFIX))
            if child is None:
                raise ValueError(
                    f"spec maps {name}.{discriminator['propertyName']} to {target_ref}, which the "
                    "spec does not define; the copy under line_standin/spec/ is damaged"
                )
            for part in child.get("allOf", []):
                if part.get("$ref") == parent_ref:
                    part["$ref"] = parent_ref + _BASE_SUFFIX
    return out


class _DiscriminatorError(ValidationError):
    """A discriminator that names no known type, with the words LINE's API answers it with."""

    line_message: str = ""


def _discriminator_keyword(
    validator: Any, discriminator: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    prop = discriminator["propertyName"]
    if prop not in instance:
        return  # the schema's ``required`` reports the missing property
    mapping = discriminator.get("mapping", {})
    value = instance[prop]
    target = mapping.get(value) if isinstance(value, str) else None
    if target is None:
        error = _DiscriminatorError(
            f"Invalid {prop} {value!r}: must be one of {', '.join(sorted(mapping))}",
            path=[prop],
        )
        error.line_message = f"must be one of [{', '.join(sorted(mapping))}]"
        yield error
        return
    yield from validator.descend(instance, {"$ref": target})


_OpenApiValidator = validators.extend(Draft4Validator, {"discriminator": _discriminator_keyword})


def property_path(path: Any) -> str:
    """Render a jsonschema path like LINE does: ``messages[0].contents.body``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_message(error: ValidationError) -> str:
    """Word a jsonschema error the way LINE words its ``details[].message``."""
    explicit = getattr(error, "line_message", None)
    if explicit:
        return explicit
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind in ("maxItems", "minItems"):
        return f"Size must be between {schema.get('minItems', 0)} and {schema.get('maxItems', 'unbounded')}"
    if kind in ("maxLength", "minLength"):
        return f"Length must be between {schema.get('minLength', 0)} and {schema.get('maxLength', 'unbounded')}"
    if kind in ("maximum", "minimum"):
        return f"must be between {schema.get('minimum', '-inf')} and {schema.get('maximum', 'inf')}"
    if kind == "type":
        return f"must be of type {error.validator_value}"
    if kind == "enum":
        return f"must be one of {error.validator_value}"
    if kind == "pattern":
        return f"must match \"{error.validator_value}\""
    return error.message


def _details(errors: Iterator[ValidationError], prefix: str = "") -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    for error in errors:
        # allOf/anyOf wrap the real errors; report the leaves, where LINE reports them.
        leaves = [error] if not error.context else [e for e in error.context]
        for leaf in leaves:
            path = list(leaf.absolute_path)
            if leaf.validator == "required":
                missing = leaf.message.split("'")[1] if "'" in leaf.message else ""
                path.append(missing)
                details.append(ErrorDetail("must be specified", prefix + property_path(path)))
            else:
                details.append(ErrorDetail(_line_message(leaf), prefix + property_path(path)))
    # One error can reach us along two allOf branches; LINE lists each once.
    return list(dict.fromkeys(details))


def _plain_string_arrays(schema: Mapping[str, Any]) -> dict[str, tuple[int, int | None]]:
    """Top-level properties that are arrays of unconstrained strings: name -> (minItems, maxItems).

    These are the recipient lists (multicast ``to``: up to 500 ids). jsonschema
    walks them item by item through its generic machinery (about 1.5 ms for 500
    ids); a list comprehension checks the very same rules, read from the spec,
    in about 20 us, which is what lets the stand-in keep up with LINE's
    multicast rate on a small machine.
    """
    out: dict[str, tuple[int, int | None]] = {}
    for name, prop in schema.get("properties", {}).items():
        if (
            prop.get("type") == "array"
            and prop.get("items") == {"type": "string"}
            and set(prop) <= {"type", "items", "minItems", "maxItems", "description"}
        ):
            out[name] = (prop.get("minItems", 0), prop.get("maxItems"))
    return out


def _string_array_errors(
    name: str, value: Any, min_items: int, max_items: int | None, prefix: str
) -> list[ErrorDetail]:
    if not isinstance(value, list):
        return [ErrorDetail("must be of type array", prefix + name)]
    details = []
    if len(value) < min_items or (max_items is not None and len(value) > max_items):
        upper = "unbounded" if max_items is None else max_items
        details.append(ErrorDetail(f"Size must be between {min_items} and {upper}", prefix + name))
    details.extend(
        ErrorDetail("must be of type string", f"{prefix}{name}[{i}]")
        for i, item in enumerate(value)
        if not isinstance(item, str)
    )
    return details


class SpecValidator:
    """Validate JSON bodies against named schemas of one OpenAPI document."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        schemas = _split_discriminated_parents(document["components"]["schemas"])
        self._fast_arrays: dict[str, dict[str, tuple[int, int | None]]] = {}
        for name, schema in list(schemas.items()):
            arrays = _plain_string_arrays(schema) if isinstance(schema, dict) else {}
            if arrays:
                # Same schema, minus the string arrays, which errors() checks itself.
                lean = copy.deepcopy(schema)
                for prop in arrays:
                    lean["properties"][prop] = {}
                schemas[name + "__lean"] = lean
                self._fast_arrays[name] = arrays
        self._root = {"components": {"schemas": schemas}}
        self._validators: dict[str, Any] = {}
        self.document = document

    @property
    def schemas(self) -> Mapping[str, Any]:
        return self._root["components"]["schemas"]

    def _validator(self, schema_name: str) -> Any:
        validator = self._validators.get(schema_name)
        if validator is None:
            if schema_name not in self.schemas:
                raise KeyError(f"schema {schema_name!r} is not in the spec")
            validator = _OpenApiValidator({"$ref": _SCHEMA_PREFIX + schema_name, **self._root})
            self._validators[schema_name] = validator
        return validator

    def errors(self, schema_name: str, instance: Any, prefix: str = "") -> list[ErrorDetail]:
        """Every way ``instance`` breaks ``schema_name``, as LINE-style details (empty when valid)."""
        arrays = self._fast_arrays.get(schema_name)
        if not arrays or not isinstance(instance, dict):
            return _details(self._validator(schema_name).iter_errors(instance), prefix)
        details = _details(self._validator(schema_name + "__lean").iter_errors(instance), prefix)
        for name, (min_items, max_items) in arrays.items():
            if name in instance:
                details.extend(_string_array_errors(name, instance[name], min_items, max_items, prefix))
        return details

    def request_schema_name(self, path: str, method: str = "post") -> str | None:
        """Name of the request-body schema the spec gives ``method path``, if any."""
        operation = self.document["paths"].get(path, {}).get(method.lower())
        if not operation or "requestBody" not in operation:
            return None
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        return ref.removeprefix(_SCHEMA_PREFIX)


@functools.cache
def messaging_spec() -> SpecValidator:
    """The Messaging API spec, parsed once per process."""
    return SpecValidator(_load_yaml(MESSAGING_SPEC_FILE))


@functools.cache
def webhook_spec() -> SpecValidator:
    """The webhook spec, parsed once per process."""
    return SpecValidator(_load_yaml(WEBHOOK_SPEC_FILE))
