"""The backtest: recorded market data through the live engine's own decision code, in one process.

memory (the store and the risk memory, in memory), venue (the simulated exchange), engine (the tick path of
workers/tickpath.py on them), run (data in, trades and equity out).
"""
