"""ottla.broker: the I/O shell — sockets, asyncio, handlers, partitions."""

from ottla.broker.broker import Broker, StartupError

__all__ = ["Broker", "StartupError"]
