"""OKX v5 adapter: wire decoding (messages, records, convert), errors, signing, rate limits, REST and
WebSocket clients, the Exchange adapter and the public market-data stream."""

from exchanges.okx.adapter import OkxExchange
from exchanges.okx.messages import DecodeError, WsDecoder, decode_rest, decode_ws
from exchanges.okx.public import OkxPublicStream

__all__ = ["DecodeError", "OkxExchange", "OkxPublicStream", "WsDecoder", "decode_rest", "decode_ws"]
