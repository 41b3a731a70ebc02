"""Sans-I/O protocol machines: bytes in, events and bytes out.

No sockets, no asyncio, no clock and no files live in this package (DESIGN.md, modelled on
h11). Every machine offers the same three things to its adapter:

* ``receive_data(data) -> list[event]``: feed bytes, get what could be parsed;
* ``data_to_send() -> bytes``: drain the reply bytes produced so far;
* ``closing``: true once the machine wants the connection closed after its output is sent.
"""
