"""URLs and their domains, text fingerprints, and the relay-test rules, on known inputs."""

from __future__ import annotations

import random

import pytest

from spampot.analysis.content import fingerprint
from spampot.analysis.content.extract import extract
from spampot.analysis.content.relay import RelayContext, relay_evidence
from spampot.analysis.content.urls import deobfuscate, extract_urls, normalise, registered_domain


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("www.example.com", "example.com"),
        ("a.b.c.example.co.uk", "example.co.uk"),
        ("shop.example.com.br", "example.com.br"),
        ("foo.blogspot.com", "foo.blogspot.com"),  # a private suffix: the unit a host takes down
        ("xn--bcher-kva.ch", "xn--bcher-kva.ch"),
        ("mail.yahoo.com.tw", "yahoo.com.tw"),
        ("203.0.113.7", "203.0.113.7"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("com", None),
        ("", None),
    ],
)
def test_registered_domain_from_the_shipped_list(host, domain):
    assert registered_domain(host) == domain


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("hxxp://evil[.]example[.]com/a", "http://evil.example.com/a"),
        ("hXXps[:]//evil(.)example(.)com", "https://evil.example.com"),
        ("h**p://x[dot]example[dot]org", "http://x.example.org"),
    ],
)
def test_defanged_forms(text, want):
    fixed, changed = deobfuscate(text)
    assert changed and fixed == want


@pytest.mark.parametrize(
    ("raw", "url", "host"),
    [
        ("HTTP://WWW.Example.COM/Path?Q=1", "http://www.example.com/Path?Q=1", "www.example.com"),
        ("www.example.com.", "http://www.example.com", "www.example.com"),  # trailing dot
        ("http://user:pw@evil.example:8080/x", "http://evil.example:8080/x", "evil.example"),
        ("http://0x7f.0x0.0x0.0x1/", "http://127.0.0.1/", "127.0.0.1"),  # dotted hex
        ("http://017700000001/", "http://127.0.0.1/", "127.0.0.1"),  # one octal number
        ("http://192.168.257/", "http://192.168.1.1/", "192.168.1.1"),  # last part: 2 bytes
        ("http://1.2.3.4.5/", None, None),  # five parts: neither address nor name
        ("http://256.1.1.1/", None, None),
        ("http://bücher.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        ("http://%65vil.example/", "http://evil.example/", "evil.example"),
        (
            "http://evil.example\\@good.example/",
            "http://evil.example\\@good.example/",
            "evil.example",
        ),
        ("http://localhost/", None, None),
        ("javascript:alert(1)", None, None),
    ],
)
def test_normalise(raw, url, host):
    got = normalise(raw)
    if url is None:
        assert got is None
    else:
        assert got is not None and got[:2] == (url, host)


def test_urls_text_and_html_sources():
    urls = extract_urls(
        [("see www.a.example.com, and (http://b.example.net/x).", "text")],
        ['<A HREF = "http://c.example.org/">x</A><form action=https://d.example.org/p>'],
    )
    assert [(u.url, u.source) for u in urls] == [
        ("http://www.a.example.com", "text"),
        ("http://b.example.net/x", "text"),
        ("http://c.example.org/", "html"),
        ("https://d.example.org/p", "html"),
    ]


def _campaign_copy(rng: random.Random, base: list[str], name: str) -> str:
    words = ["apple", "river", "stone", "cloud", "paper", "garden", "silver", "window"]
    buster = " ".join(rng.choice(words) for _ in range(3))
    return (
        f"Dear {name},\n\n"
        + "\n".join(base)
        + f"\n\nhttp://x.example/?id={rng.randrange(10**6)}\n{buster}\n"
    )


def test_minhash_bands_find_copies_and_separate_campaigns():
    rng = random.Random(7)
    pharma = [
        "We ship worldwide in discreet packaging, lowest prices guaranteed on every order.",
        "Our licensed pharmacists answer every question you may have about your treatment.",
        "Over one million satisfied clients trust us with their prescriptions every year.",
    ]
    stock = [
        "The company just announced a major contract with a government agency in Asia.",
        "Analysts expect the price to reach two dollars fifty before the end of the month.",
        "Volume is rising fast so get in before the crowd and watch the ticker tomorrow.",
    ]

    def bands(text: str) -> set[int]:
        norm = fingerprint.normalise_text(text)
        sig = fingerprint.signature(fingerprint.shingle_hashes(fingerprint.words(norm)))
        return set(fingerprint.bands(sig))

    copies = [bands(_campaign_copy(rng, pharma, n)) for n in ("ana", "bo", "chen", "dmitri")]
    others = [bands(_campaign_copy(rng, stock, n)) for n in ("ana", "bo")]
    assert all(len(a & b) >= 1 for a in copies for b in copies)
    assert not any(a & b for a in copies for b in others)
    # normalisation: digits and punctuation do not change the hash
    assert fingerprint.body_hash(fingerprint.normalise_text("Price: $19.99!")) == (
        fingerprint.body_hash(fingerprint.normalise_text("price $29,49"))
    )


def test_tlsh_needs_enough_data():
    assert fingerprint.fuzzy_hash(b"short") is None
    assert fingerprint.fuzzy_hash(bytes(range(256)) * 2) is not None


# --- relay tests ----------------------------------------------------------------------------


def _msg(subject: str, body: str) -> bytes:
    return (
        f"From: t@tester.example\r\nTo: me@tester.example\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    ).encode()


CTX = RelayContext(dst_ip="192.0.2.10", dst_port=8080, target_host="mx1.hotmail.com", recipients=1)


@pytest.mark.parametrize(
    ("subject", "body", "ctx", "evidence"),
    [
        ("ok", "192.0.2.10", CTX, "address 192.0.2.10"),
        ("proxy ok", "203.0.113.9:8080 works", CTX, "address:port 203.0.113.9:8080"),
        ("hello", "relay via mx1.hotmail.com", CTX, "target mx1.hotmail.com"),
        ("a8f3k29x1q", "", CTX, "token a8f3k29x1q"),
        ("hi", "ID: 7F3A9C21D4", CTX, "token 7F3A9C21D4"),
        ("Test", "hello", CTX, "keyword test"),
    ],
)
def test_relay_evidence_rules(subject, body, ctx, evidence):
    c = extract(_msg(subject, body), relay=ctx)
    assert evidence in c.relay_evidence
    assert c.relay_evidence[:2] == [f"short ({c.text_chars} chars)", "1 recipient(s)"]


@pytest.mark.parametrize(
    ("subject", "body", "ctx"),
    [
        # the address only as part of a longer number
        ("hello", "192.0.2.100 and 10.192.0.2.10", CTX),
        # a port that is not the one reached
        ("hello", "203.0.113.9:3128", CTX),
        # right evidence, too many recipients (not the tester's own few mailboxes)
        ("test", "192.0.2.10", RelayContext("192.0.2.10", 8080, None, 4)),
        # right evidence, but long: spam, not a test
        ("test", "192.0.2.10 " + "buy now " * 200, CTX),
        # plain words are no token, and no keyword
        ("Hello friend", "How are you today", CTX),
    ],
)
def test_relay_rules_do_not_fire(subject, body, ctx):
    assert extract(_msg(subject, body), relay=ctx).relay_evidence == []


def test_relay_rules_on_spam_with_urls_and_attachments():
    assert relay_evidence(CTX, "test", "192.0.2.10", 10, 2, 0) == []  # two URLs: advertising
    assert relay_evidence(CTX, "test", "192.0.2.10", 10, 0, 1) == []  # an attachment
    assert relay_evidence(CTX, "test", "192.0.2.10", 10, 1, 0) != []
