"""A small asyncio client of WS /v1/stream, over wsproto (the WebSocket library uvicorn serves it with).

```python
client = await StreamClient.connect("ws://127.0.0.1:8000/v1/stream?format=s16le")
ready = await client.event()  # {"type": "ready", ...}
await client.send_audio(pcm_bytes)  # 16 kHz mono, as many chunks as you like
await client.end()  # the open segment is scored, then "end" comes
async for event in client.events():  # "partial", "segment", ..., "end" or "error"
    ...
```

A server with an API key (`SER_API_KEY`) takes it with the handshake, as for every `/v1` request:
`StreamClient.connect(url, api_key=KEY)` sends it as `X-API-Key`. The key never goes into the URL.
A client that cannot send headers (a browser page) opens the stream with a single-use ticket
instead: `url + "&ticket=" + ticket`, the ticket from POST /v1/stream/tickets
(`serving.stream_tickets`). Without either, the server sends an `unauthorized` error and closes
with 4401.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class StreamClient:
    """One stream: send audio and `{"type": "end"}`, read the server's JSON events in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection):
        self._reader, self._writer, self._ws = reader, writer, connection
        self._events: list[dict] = []
        self._text: list[str] = []
        self.close_code: int | None = None

    @classmethod
    async def connect(
        cls, url: str, headers: dict[str, str] | None = None, api_key: str | None = None
    ) -> StreamClient:
        """Open a stream at `url` (ws://host:port/v1/stream?format=...).

        Args:
            url: the stream's address.
            headers: extra request headers.
            api_key: the server's API key, sent as `X-API-Key` (None: a server without a key, or
                a `ticket=` in `url`).

        Returns:
            The connected client.

        Raises:
            ConnectionError: when the server refuses the handshake.
        """
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, RejectConnection, Request

        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        connection = WSConnection(ConnectionType.CLIENT)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {**(headers or {}), **({"X-API-Key": api_key} if api_key else {})}
        extra = [(k.encode(), v.encode()) for k, v in sent.items()]
        writer.write(connection.send(Request(host=parts.netloc, target=target, extra_headers=extra)))
        await writer.drain()
        client = cls(reader, writer, connection)
        while True:
            items = await client._read()
            for i, event in enumerate(items):
                if isinstance(event, AcceptConnection):
                    client._take(items[i + 1 :])  # the first events may come with the handshake
                    return client
                if isinstance(event, RejectConnection):
                    writer.close()
                    raise ConnectionError(f"{url} refused the stream with HTTP {event.status_code}")

    async def _read(self) -> list:
        data = await self._reader.read(65536)
        self._ws.receive_data(data if data else None)
        return list(self._ws.events())

    async def send_audio(self, data: bytes) -> None:
        """Send one binary frame of PCM samples."""
        from wsproto.events import BytesMessage

        self._writer.write(self._ws.send(BytesMessage(data=data)))
        await self._writer.drain()

    async def end(self) -> None:
        """Tell the server the audio is over: it scores the open segment, sends `end` and closes."""
        from wsproto.events import TextMessage

        self._writer.write(self._ws.send(TextMessage(data=json.dumps({"type": "end"}))))
        await self._writer.drain()

    async def event(self) -> dict | None:
        """Wait for the server's next event.

        Returns:
            The event, or None once the server has closed the stream (`close_code` tells how).
        """
        while not self._events:
            if self.close_code is not None:
                return None
            self._take(await self._read())
            if not self._events and self._reader.at_eof() and self.close_code is None:
                self.close_code = 1006  # the connection dropped without a close frame
        return self._events.pop(0)

    def _take(self, items: list) -> None:
        """Keep the server's messages as events; answer its close and pings."""
        from wsproto.events import CloseConnection, Ping, TextMessage

        for item in items:
            if isinstance(item, TextMessage):
                self._text.append(item.data)
                if item.message_finished:
                    self._events.append(json.loads("".join(self._text)))
                    self._text = []
            elif isinstance(item, CloseConnection):
                self.close_code = item.code
                self._writer.write(self._ws.send(item.response()))
                self._writer.close()
            elif isinstance(item, Ping):
                self._writer.write(self._ws.send(item.response()))

    async def events(self) -> AsyncIterator[dict]:
        """Yield the server's events until it closes the stream.

        Yields:
            Each event, in the order sent.
        """
        while (item := await self.event()) is not None:
            yield item
