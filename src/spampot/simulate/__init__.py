"""Synthetic spammer traffic: offline datasets shaped like a fleet's captures, and live
traffic that drives a running sensor over loopback."""
