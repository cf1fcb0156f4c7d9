"""Exact, incremental (O(1) per update) technical indicators on candles built from ticks."""

from indicators.atr import Atr
from indicators.candles import Candle, CandleBuilder
from indicators.ema import Ema
from indicators.macd import Macd
from indicators.rsi import Rsi
from indicators.symbol import SymbolIndicators

__all__ = ["Atr", "Candle", "CandleBuilder", "Ema", "Macd", "Rsi", "SymbolIndicators"]
