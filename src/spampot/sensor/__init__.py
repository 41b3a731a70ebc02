"""The sensor daemon: asyncio adapters around spampot.protocols, the spool and the event log."""
