"""How much of one message content extraction reads, decodes and keeps.

Every number bounds memory or time whatever a message holds; each says where it comes from.
A message that reaches a limit is still extracted up to it, and its row says which limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from spampot.protocols.smtp import SmtpLimits


@dataclass(frozen=True, slots=True)
class ContentLimits:
    # Bytes of one stored message read: the most a sensor stores with its default
    # smtp.message_cap (whatever SIZE a persona advertises). Spam is a few kilobytes; a
    # sensor configured with a larger cap gets rows that say the message was truncated.
    max_message_bytes: int = SmtpLimits().message_cap
    # MIME parts walked, and nesting depth. Postfix's mime_nesting_limit is 100; real mail
    # rarely nests beyond 5. 100 parts is SpamAssassin's default for its MIME walk bound.
    max_parts: int = 100
    max_depth: int = 20
    # Decoded bytes of one part: base64 of a 10 MB message decodes to at most 7.5 MB.
    max_part_bytes: int = 8 * 1024 * 1024
    # Text kept from all text parts for URLs, language, hashes: 256 KiB is far beyond any
    # spam text and bounds the regular expressions' work.
    max_text_chars: int = 256 * 1024
    # URLs kept per message. 256 covers link farms; beyond that they add nothing to a feed.
    max_urls: int = 256
    # Longest URL kept: 2,083 characters was Internet Explorer's limit, the lowest common one
    # (RFC 9110 §4.1 recommends supporting at least 8,000 octets; no spam link needs that).
    max_url_chars: int = 2083
    # Attachments described per message, and names listed inside one archive.
    max_attachments: int = 50
    max_archive_members: int = 50
    # A header value kept for the row (RFC 5322 §2.1.1: a line is at most 998 characters).
    max_header_chars: int = 998
    # RFC 2047 encoded words ("=?") in a message beyond which the fast parser is not used: it
    # decodes a header's words in time quadratic in their number (5,000 in one Subject: 45 ms;
    # 40,000: 2.5 s), where the lenient parser reads only max_header_chars of a value.
    max_encoded_words: int = 2000
    # Characters given to the language detector: CLD2 names a language reliably from a few
    # dozen words (or CJK characters), and costs time in proportion.
    max_language_chars: int = 256
    # Bytes of normalised text whose word 4-grams make the MinHash signature.
    max_shingle_chars: int = 20_000


DEFAULT_LIMITS = ContentLimits()
