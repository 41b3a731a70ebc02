"""The content tables of the warehouse, declared once: their columns and types.

Ingest writes them from these declarations (Arrow types), and the warehouse's empty stand-ins
and the report's SQL read the same names. Every table starts with the keys that tie a row to
its ``messages`` row: the message file is ``raw/<raw_sensor>/<file>``, one per email.
"""

from __future__ import annotations

import pyarrow as pa

from spampot.analysis.content.fingerprint import BANDS

_KEYS: list[tuple[str, pa.DataType]] = [
    ("ts", pa.timestamp("us")),
    ("sensor", pa.string()),
    ("raw_sensor", pa.string()),
    ("file", pa.string()),
    ("src_ip", pa.string()),
]

MESSAGE_CONTENT: list[tuple[str, pa.DataType]] = [
    *_KEYS,
    ("sha256", pa.string()),  # of the message, as its event says
    ("country", pa.string()),  # of src_ip, as in messages (campaigns are counted from here)
    ("asn", pa.int64()),
    ("status", pa.string()),  # ok, error (unreadable message), missing (no file)
    ("error", pa.string()),
    ("parser", pa.string()),  # fast or stdlib: which MIME parser read it (mime.py)
    ("limit_reached", pa.string()),  # the first extraction limit reached, if any
    ("defects", pa.int32()),  # MIME defects the stdlib parser noted; null when not read by it
    ("size", pa.int64()),
    ("content_type", pa.string()),
    ("parts", pa.int32()),
    ("depth", pa.int32()),
    ("subject", pa.string()),
    ("from_addr", pa.string()),
    ("from_domain", pa.string()),
    ("reply_to_domain", pa.string()),
    ("return_path_domain", pa.string()),
    ("message_id_domain", pa.string()),
    ("date_skew_s", pa.int64()),
    ("mailer", pa.string()),
    ("charset", pa.string()),
    ("language", pa.string()),
    ("text_chars", pa.int32()),
    ("url_count", pa.int32()),
    ("attachment_count", pa.int32()),
    ("body_hash", pa.string()),
    ("text_tlsh", pa.string()),
    *[(f"mh{i}", pa.int64()) for i in range(BANDS)],
    ("relay_evidence", pa.string()),
]

MESSAGE_URLS: list[tuple[str, pa.DataType]] = [
    *_KEYS,
    ("url", pa.string()),
    ("host", pa.string()),
    ("domain", pa.string()),  # registered domain (Public Suffix List), or the IP address
    ("source", pa.string()),  # text, html, html-text
    ("obfuscated", pa.bool_()),
]

MESSAGE_ATTACHMENTS: list[tuple[str, pa.DataType]] = [
    *_KEYS,
    ("filename", pa.string()),
    ("declared_type", pa.string()),
    ("sniffed_type", pa.string()),
    ("size", pa.int64()),
    ("sha256", pa.string()),
    ("tlsh", pa.string()),
    ("archive_members", pa.list_(pa.string())),
]

CONTENT_TABLES: dict[str, list[tuple[str, pa.DataType]]] = {
    "message_content": MESSAGE_CONTENT,
    "message_urls": MESSAGE_URLS,
    "message_attachments": MESSAGE_ATTACHMENTS,
}


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema(CONTENT_TABLES[table])


def stored_schema(table: str) -> pa.Schema:
    """The columns as the warehouse stores them: the table's, and its ``day`` partition."""
    return arrow_schema(table).append(pa.field("day", pa.date32()))


_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us"): "TIMESTAMP",
    pa.list_(pa.string()): "VARCHAR[]",
}


def sql_columns(table: str) -> str:
    """``name TYPE, ...`` of a content table, for an empty stand-in of it."""
    return ", ".join(f'"{name}" {_SQL_TYPES[kind]}' for name, kind in CONTENT_TABLES[table])
