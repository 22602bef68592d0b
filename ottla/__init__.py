"""ottla: a Kafka-compatible event-streaming broker written in Python (asyncio)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
