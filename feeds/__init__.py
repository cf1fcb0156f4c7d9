"""Market and account data coming in: exchange streams decoded into ticks and events."""
