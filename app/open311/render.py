"""The spec's two formats: JSON (lists at the top level) and XML built with ElementTree."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from flask import Response

XML_TYPE = "application/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
# The element each list's items are called, as in the spec's examples.
ITEM_TAGS = {
    "service_requests": "request",
    "services": "service",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}
# Characters XML 1.0 cannot carry at all; stored text keeps them, the XML drops them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _fill(parent: ET.Element, tag: str, value) -> None:
    """Append `value` under `parent` as <tag>: dicts and lists nest, scalars are text."""
    node = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(node, key, item)
    elif isinstance(value, list):
        for item in value:
            _fill(node, ITEM_TAGS.get(tag, "item"), item)
    else:
        node.text = _text(value)


def to_xml(root: str, body) -> bytes:
    """Serialise a list (items under ITEM_TAGS[root]) or a dict under <root>, UTF-8 declared."""
    element = ET.Element(root)
    if isinstance(body, list):
        for item in body:
            _fill(element, ITEM_TAGS[root], item)
    else:
        for key, item in body.items():
            _fill(element, key, item)
    return ET.tostring(element, encoding="UTF-8", xml_declaration=True)


def respond(fmt: str, root: str, body, status: int = 200) -> Response:
    """Answer in the format the URL asked for."""
    if fmt == "xml":
        return Response(to_xml(root, body), status=status, content_type=XML_TYPE)
    data = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    return Response(data, status=status, content_type=JSON_TYPE)


def error_body(status: int, description: str, fields: dict | None = None) -> list[dict]:
    """The spec's error envelope: one {code, description} per problem, per field when known."""
    if fields:
        return [
            {"code": status, "description": f"{name}: {_flatten(reason)}"}
            for name, reason in fields.items()
        ]
    return [{"code": status, "description": description}]


def _flatten(reason) -> str:
    """Turn nested marshmallow messages into one line."""
    if isinstance(reason, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in reason.items())
    if isinstance(reason, list | tuple):
        return "; ".join(_flatten(r) for r in reason)
    return str(reason)
