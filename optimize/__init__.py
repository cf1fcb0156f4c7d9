"""Settings searched over backtests: `scalper optimize` (Optuna's TPE) and `scalper sweep` (a grid).

params (what --param means, checked against the settings model), objectives, trial (one trial as an RQ
job: the backtest in and out of sample), coordinator (the study's one writer: ask, enqueue, watch, tell),
worker (`scalper worker --trials`), verdict/summary (in sample against out of sample), terminal and page
(the report).
"""
