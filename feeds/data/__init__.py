"""Market data from files, for the backtest and the replay feed alike: its format detected by its content,
never guessed from its name.

Every file is first gunzipped if it starts with the gzip magic number (1f 8b). Then, in this order:

- Freqtrade feather candles: the Arrow magic `ARROW1` (or Feather v1's `FEA1`) at the start; needs pyarrow.
- scalper recording (`scalper record`): a first line `# scalper ticks v1`.
- Binance capture: lines of JSON messages, optionally after a receive time (`<ns> {...}`), with an event
  type `e`, bare or under `data`.
- OKX capture: lines of JSON messages, optionally after a receive time, with `arg.channel` (pushes) or an
  `event` (acks).
- OKX candles: a response `{"code": "0", "data": [[ts, o, h, l, c, ...], ...]}`, one document or one per
  line, or candle rows of strings, one per line or in one array.
- Freqtrade JSON candles: a JSON array of arrays of numbers `[[ms, o, h, l, c, v], ...]`.
- OHLCV CSV: a header with a time column (timestamp, date, datetime, time or open_time) and open, high,
  low, close.
- headerless kline CSV: a first row of six or more numbers, the first an integer time (Binance's klines).

Anything else is refused in one line that names the file and lists these (DataError); so is a file that is
missing, a directory, binary, empty, or whose first records do not parse. A bad record after the first
ones is skipped and counted (MarketData.notes). Times may be epoch seconds, milliseconds or microseconds
(told by their size) or ISO 8601; candles come out as bars at their detected interval (the most common
step), which must divide `indicators.candle_seconds`; captures and recordings come out as ticks.
`bar_ticks` is how a bar becomes ticks (feeds/data/expand.py).
"""

from feeds.data.args import SAMPLE, sample_path
from feeds.data.detect import EXPECTED, Format
from feeds.data.errors import DataError
from feeds.data.expand import bar_ticks
from feeds.data.load import MarketData, check_interval, load_market_data
from feeds.data.series import Bars, Candle, Series, Tick, Ticks

__all__ = [
    "EXPECTED",
    "SAMPLE",
    "Bars",
    "Candle",
    "DataError",
    "Format",
    "MarketData",
    "Series",
    "Tick",
    "Ticks",
    "bar_ticks",
    "check_interval",
    "load_market_data",
    "sample_path",
]
