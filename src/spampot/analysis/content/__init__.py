"""What the spam says: each stored message parsed into content rows (issue: content analysis).

``extract`` turns one message into a :class:`~spampot.analysis.content.extract.Content`;
``schema`` declares the warehouse tables it fills; ``batch`` reads a batch of stored messages
in worker processes; ``relay`` holds the relay-test rules.
"""
