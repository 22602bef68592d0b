"""Kafka error codes and the one exception type the protocol layer raises.

`ErrorCode` is kio's enum (generated from Kafka's own error table): every member
carries Kafka's numeric code and its `retriable` flag, and the same type is what kio
response entities hold, so ottla never maps between two enums.

`ProtocolError` is what every malformed input becomes: a truncated frame, a bad
varint, an absurd length, an unknown api, a bad CRC. It carries the error code a
Kafka broker would answer with, so the broker turns it into a response (or a closed
connection) without inspecting the message text.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

__all__ = ["ErrorCode", "ProtocolError"]


class ProtocolError(Exception):
    """Malformed or unsupported input; `error_code` is what the broker answers."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"ProtocolError({self.error_code.name}, {self.args[0]!r})"
