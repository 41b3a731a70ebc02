"""spampot: a honeypot sensor that captures spam by emulating open relays and open proxies."""

__version__ = "0.1.0"
