"""OKX v5 adapter pieces: wire decoding (messages, records, convert), errors, signing and rate limits."""

from exchanges.okx.messages import DecodeError, WsDecoder, decode_rest, decode_ws

__all__ = ["DecodeError", "WsDecoder", "decode_rest", "decode_ws"]
