"""What a run did, read alike for a backtest and a live or paper run: metrics, terminal tables and files."""
