"""A scripted SMTP session through the engine, printed as it runs.

The "server" here is a few lines that answer each command the engine writes; there is no
network. Every byte in either direction goes through ``smtp_proto.ClientConnection``, so
what is printed is exactly what the engine produced and understood.
"""

from __future__ import annotations

import smtp_proto

# What the scripted server says to each command it receives, in order.
SERVER_REPLIES = {
    b"EHLO": b"250-mx.example.org greets client.example\r\n250-PIPELINING\r\n"
    b"250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n",
    b"MAIL": b"250 2.1.0 sender ok\r\n",
    b"DATA": b"354 end data with <CR><LF>.<CR><LF>\r\n",
    b"BDAT": b"250 2.0.0 chunk ok\r\n",
    b"QUIT": b"221 2.0.0 bye\r\n",
}


def server_answer(line: bytes) -> bytes:
    """The reply the scripted server gives to one command line."""
    verb = line.split(b" ", 1)[0].upper()
    if verb == b"RCPT":
        if b"nobody@" in line:
            return b"550 5.1.1 <nobody@example.net>: no such user\r\n"
        return b"250 2.1.5 recipient ok\r\n"
    if verb == b"BDAT" and line.endswith(b"LAST"):
        return b"250 2.0.0 message queued as 2F1B\r\n"
    return SERVER_REPLIES[verb]


def show(direction: str, data: bytes) -> None:
    for line in data.splitlines():
        print(f"{direction} {line.decode('utf-8', 'backslashreplace')}")


class ScriptedServer:
    """Reads what the client wrote, command by command, and queues the replies."""

    def __init__(self) -> None:
        self.in_data = False

    def receive(self, wire: bytes) -> bytes:
        replies = b""
        while wire:
            line, _, wire = wire.partition(b"\r\n")
            if self.in_data:
                show("C:", line or b" ")
                if line == b".":
                    self.in_data = False
                    replies += b"250 2.0.0 message queued as 1A2B\r\n"
                continue
            show("C:", line)
            replies += server_answer(line)
            if line == b"DATA":
                self.in_data = True
            elif line.startswith(b"BDAT"):
                size = int(line.split()[1])
                print(f"C: [{size} octets of message content, sent exactly as given]")
                wire = wire[size:]
        return replies


def run() -> None:
    conn = smtp_proto.ClientConnection()
    server = ScriptedServer()

    def exchange() -> None:
        """Deliver what the client wrote to the server, and the server's replies back."""
        replies = server.receive(conn.data_to_send())
        if replies:
            show("S:", replies)
            conn.receive_data(replies)
        while True:
            event = conn.next_event()
            if event is smtp_proto.NEED_DATA or event is smtp_proto.PAUSED:
                return
            print(f"   -> {event!r}")

    greeting = b"220 mx.example.org ESMTP ready\r\n"
    show("S:", greeting)
    conn.receive_data(greeting)
    print(f"   -> {conn.next_event()!r}")

    conn.ehlo("client.example")
    exchange()
    assert conn.features is not None
    assert conn.features.pipelining

    print("\n# The server offers PIPELINING: the envelope goes out in one write.")
    conn.mail("alice@example.org", {"BODY": "8BITMIME"})
    conn.rcpt("bob@example.net")
    conn.rcpt("nobody@example.net")
    conn.rcpt("carol@example.net")
    conn.data()
    exchange()

    print("\n# Content is CRLF-normalised and dot-stuffed, across chunks: a bare-LF")
    print("# '\\n.\\n' cannot end the message early.")
    conn.send_data(b"Subject: demo\n\nA line.\n.")
    conn.send_data(b"\nnot the end\n")
    conn.end_data()
    exchange()

    print("\n# With CHUNKING, BDAT sends exact octets; the next envelope is pipelined too.")
    conn.mail("alice@example.org")
    conn.rcpt("dave@example.net")
    conn.bdat(b"Subject: chunked\r\n\r\n")
    conn.bdat(b"Sent with BDAT.\r\n", last=True)
    exchange()

    conn.quit()
    exchange()
    conn.receive_data(b"")
    print(f"   -> {conn.next_event()!r}")


if __name__ == "__main__":
    run()
