"""Tools for testing code that sends mail with smtp-proto.

- :class:`FakeServer`: a scriptable SMTP/LMTP server in memory, without I/O, to drive a
  :class:`smtp_proto.ClientConnection` or a transport through refusals, ``421``, silence
  (for timeouts) and STARTTLS;
- :func:`serve_loopback`: the same fake on a 127.0.0.1 socket, plain or with TLS, for the
  transports in :mod:`smtp_proto.transports`;
- :mod:`smtp_proto.testing.strategies`: Hypothesis strategies for replies, EHLO replies,
  hostile server output, addresses, ESMTP parameters and message bodies (needs Hypothesis:
  ``pip install smtp-proto[testing]``; import it as a module of its own).

Nothing in the engine imports this package:

>>> from smtp_proto.testing import FakeServer, serve_loopback
>>> fake = FakeServer()
>>> fake.stall_after("DATA")  # the client must time out waiting for the 354
"""

from ._loopback import serve_loopback
from ._server import MESSAGE, FakeServer, ReceivedMessage

__all__ = ["MESSAGE", "FakeServer", "ReceivedMessage", "serve_loopback"]
