"""Spam-like message texts in campaigns of near-identical messages.

A campaign is a fixed text (subject, paragraphs, a link) built from its number; each message of
it changes a few things the way bulk mailers did to defeat checksums ("hash busters"): the
greeting, a line of random words, the Message-ID and Date. So exact hashes differ while the
texts stay near-identical, which is what content-level campaign grouping must find.
"""

from __future__ import annotations

import random

_TOPICS = {
    "pharma": (
        ["Cheap meds online", "Your prescription is ready", "Save 80% on pills",
         "No prescription needed", "Top quality generics"],
        ["We ship worldwide in discreet packaging.", "Lowest prices guaranteed, order today.",
         "Our licensed pharmacists answer every question.", "Over one million satisfied clients.",
         "Free pills with every order above $99.", "Fast overnight delivery available."],
    ),
    "stock": (
        ["Hot stock alert", "This stock will explode", "Watch this ticker tomorrow",
         "Investor news release", "Breakout expected"],
        ["The company just announced a major contract.", "Analysts expect a price of $2.50.",
         "Volume is rising fast: get in before the crowd.", "Current price only $0.19.",
         "Strong buy recommendation from our newsletter.", "Do your own due diligence."],
    ),
    "watches": (
        ["Replica watches sale", "Luxury for less", "Swiss design watches",
         "Gift for yourself", "Best replicas on the net"],
        ["Every detail like the original.", "Rolex, Omega, Cartier and more brands.",
         "Prices from $149 with free shipping.", "One year warranty on every watch.",
         "Nobody will tell the difference.", "Order now and receive a free gift box."],
    ),
    "software": (
        ["OEM software cheap", "Office for $59", "Download software now",
         "Adobe and Microsoft discount", "Software at 10% of the retail price"],
        ["Instant download after payment.", "Full versions with serial numbers.",
         "All languages available.", "Windows XP Professional only $49.",
         "Save thousands of dollars on original software.", "Support included."],
    ),
    "loans": (
        ["Your loan is approved", "Refinance now", "Low rate mortgage offer",
         "Pre-approved application", "Rates are at their lowest"],
        ["Bad credit is not a problem.", "Get up to $400,000 in 24 hours.",
         "Fill in our short form to receive your quote.", "Rates starting at 3.9%.",
         "No obligation, no hidden fees.", "Thousands of homeowners already saved."],
    ),
    "casino": (
        ["Free $500 casino bonus", "Play and win tonight", "Online casino welcome offer",
         "Jackpot waiting for you", "Your bonus code inside"],
        ["Join now and double your first deposit.", "Slots, blackjack and roulette 24/7.",
         "Instant payouts to your account.", "Over 200 games to choose from.",
         "Use the bonus code below at sign-up.", "Players win every minute."],
    ),
}  # fmt: skip

_WORDS = (  # noqa: SIM905 - 37 words read better as text than as a list
    "apple river stone cloud paper garden silver window orange market yellow pencil table "
    "summer winter forest bridge candle rabbit thunder marble velvet anchor harbor meadow "
    "lantern copper violet falcon cactus ginger walnut saddle basket canyon pepper"
).split()

_TLDS = ("com", "net", "info", "biz", "cn", "ru", "org")


class Campaigns:
    """``count`` campaign texts built once; :meth:`message` renders one message of one."""

    def __init__(self, seed: int, count: int) -> None:
        rng = random.Random(seed)
        self.count = max(1, count)
        self._subjects: list[str] = []
        self._bodies: list[str] = []
        self._senders: list[str] = []
        topics = list(_TOPICS)
        for i in range(self.count):
            topic = topics[i % len(topics)]
            subjects, sentences = _TOPICS[topic]
            domain = "".join(rng.choice(_WORDS) for _ in range(2)) + "." + rng.choice(_TLDS)
            paragraphs = []
            for _ in range(rng.randint(2, 5)):
                paragraphs.append(" ".join(rng.sample(sentences, rng.randint(2, 4))))
            link = f"http://www.{domain}/{rng.choice(_WORDS)}/?id={rng.randrange(10**6)}"
            paragraphs.append(f"Visit {link}")
            paragraphs.append(f"To be removed from our list reply with REMOVE to info@{domain}")
            self._subjects.append(rng.choice(subjects))
            self._bodies.append("\r\n\r\n".join(paragraphs) + "\r\n")
            self._senders.append(domain)

    def sender_domain(self, campaign: int) -> str:
        return self._senders[campaign % self.count]

    def message(
        self,
        campaign: int,
        variant: int,
        mail_from: str,
        to: str,
        date: str,
        message_id: str,
    ) -> bytes:
        """One message as a client sends it after DATA (CRLF line ends, no final dot)."""
        c = campaign % self.count
        name = to.split("@", 1)[0]
        w = _WORDS
        n = len(w)
        buster = f"{w[variant % n]} {w[(variant >> 6) % n]} {w[(variant >> 12) % n]}"
        subject = self._subjects[c]
        if variant & 1:
            subject = f"{subject} {variant % 1000}"
        text = (
            f"From: <{mail_from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{message_id}@{self._senders[c]}>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\nDear {name},\r\n\r\n"
            f"{self._bodies[c]}\r\n{buster}\r\n"
        )
        return text.encode("ascii")
