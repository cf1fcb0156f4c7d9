"""scalper: crypto perpetual-futures scalping where every position is a finite-state machine in Redis."""

__version__ = "0.1.0"
