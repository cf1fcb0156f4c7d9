"""The Redis key schema: every key under one prefix, a symbol's keys in one Redis Cluster slot.

    {prefix}:{SYMBOL}:pos:ID          HASH    the position, plain strings (Position.to_hash())
    {prefix}:{SYMBOL}:pos:ID:log      STREAM  a transition per entry: from to trigger reason price ts version
    {prefix}:{SYMBOL}:state:STATE     SET     ids of the symbol's positions in STATE
    {prefix}:{SYMBOL}:positions       SET     ids of all the symbol's positions
    {prefix}:{SYMBOL}:archived        ZSET    closed ids whose ledger row is written -> close time (wall):
                                              the retention's queue, oldest first
    {prefix}:{SYMBOL}:outbox          STREAM  order intents of stores without an RQ hand-off (for the relay)
    {prefix}:{SYMBOL}:ticks           STREAM  market ticks from the feed (px bid ask ts), trimmed
    {prefix}:{SYMBOL}:history         STREAM  closed 1-minute candles for indicator warm-up (ts o h l c)
    {prefix}:{SYMBOL}:events          STREAM  the exchange's order/position events for the symbol
    {prefix}:{SYMBOL}:stops           HASH    protective stops that may be live at the exchange, until
                                              confirmed gone (workers/protection.py)
    {prefix}:symbols                  SET     symbols that ever had a position
    {prefix}:pos-symbol               HASH    id -> symbol, so a position can be found by id alone
    {prefix}:lease:SHARD              STRING  the engine that owns a symbol shard (token, with a TTL)
    {prefix}:leases                   SET     the shards an engine has held a lease on (their names, so a
                                              reader finds the leases without scanning the keyspace)
    {prefix}:clean-stop               STRING  run id of the Redis server `scalper run` last shut down cleanly
    {prefix}:engine:cursor            HASH    symbol -> last tick stream id the engine has processed
    {prefix}:exchange                 HASH    what the reconciler last knew: state ok|unknown, since, why;
                                              settled_at: a pass applied, lost records swept
    {prefix}:panic                    STRING  set by `scalper panic`: close everything, no entries
    {prefix}:control                  STREAM  operator commands for the engines (open, close), with their ids
    {prefix}:control:reply:CMD        STRING  the outcome of operator command CMD (JSON), kept a day
    {prefix}:{SYMBOL}:quarantined     SET     flagged positions: hash unparseable or step failed
    {prefix}:dead-letter              STREAM  records a reader could not parse (workers/quarantine.py)
    {prefix}:quarantined              HASH    source -> number of records quarantined
    {prefix}:ledger:{YYYYMMDD}        HASH    the UTC day's trade ledger: position id -> its trade (JSON)
    {prefix}:ledger:days              SET     the days that have a ledger
    {prefix}:web:url                  STRING  where `scalper web` serves (scalper/web/serve.py)
    {prefix}:{SYMBOL}:metrics:transitions
                                      HASH    "from|to|trigger" -> transitions applied (the store's scripts)
    {prefix}:metrics:NAME             HASH    a counter family kept where it is counted, exported by
                                              `scalper web`'s /metrics (statemachines/counters.py)
    {prefix}:restarts                 STREAM  processes the supervisor restarted: name code ran_s restarts ts

The braces around the symbol are a Cluster hash tag: only the text between the first `{` and `}` is hashed,
so a position's hash, its log and its symbol's index sets share a slot and one Lua script may touch them all.
"""

from __future__ import annotations

DEFAULT_PREFIX = "scalper"

_FORBIDDEN = frozenset("{} \t\r\n")


def _check(kind: str, value: str, forbidden: frozenset[str] = _FORBIDDEN) -> str:
    # A brace would move the hash tag; a blank breaks copy-pasting the key into redis-cli.
    if not value or any(ch in forbidden for ch in value):
        raise ValueError(f"invalid {kind} {value!r}: must be non-empty, none of {sorted(forbidden)}")
    return value


def _check_leaf(kind: str, value: str) -> str:
    # Ids and states end a key; a colon in them would make `...:pos:ID:log` ambiguous.
    return _check(kind, value, _FORBIDDEN | {":"})


class Keys:
    """Names of the keys under one prefix; pure string building, no Redis access."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = _check("prefix", prefix)

    @staticmethod
    def symbol_of(key: str | bytes) -> str:
        """The symbol in a per-symbol key (the text inside its hash tag), e.g. from a stream name XREAD
        returns."""
        text = key.decode() if isinstance(key, bytes) else key
        return text.split("{", 1)[1].split("}", 1)[0]

    def slot(self, symbol: str) -> str:
        """The per-symbol key stem; everything starting with it hashes to the same Cluster slot."""
        return f"{self.prefix}:{{{_check('symbol', symbol)}}}"

    def pos(self, symbol: str, position_id: str) -> str:
        return f"{self.slot(symbol)}:pos:{_check_leaf('position id', position_id)}"

    def log(self, symbol: str, position_id: str) -> str:
        return f"{self.pos(symbol, position_id)}:log"

    def archived(self, symbol: str) -> str:
        """The symbol's closed positions whose ledger row is written, scored by their close (wall) time."""
        return f"{self.slot(symbol)}:archived"

    def state(self, symbol: str, state: str) -> str:
        return f"{self.slot(symbol)}:state:{_check_leaf('state', state)}"

    def positions(self, symbol: str) -> str:
        return f"{self.slot(symbol)}:positions"

    def outbox(self, symbol: str) -> str:
        """Order intents written with their transitions by a store without a hand-off, for the relay."""
        return f"{self.slot(symbol)}:outbox"

    def ticks(self, symbol: str) -> str:
        return f"{self.slot(symbol)}:ticks"

    def history(self, symbol: str) -> str:
        return f"{self.slot(symbol)}:history"

    def events(self, symbol: str) -> str:
        return f"{self.slot(symbol)}:events"

    def stops(self, symbol: str) -> str:
        """Protective stop id -> "placed" or the time its placement was sent, until it is known gone."""
        return f"{self.slot(symbol)}:stops"

    def lease(self, shard: str) -> str:
        return f"{self.prefix}:lease:{_check_leaf('shard', shard)}"

    def leases(self) -> str:
        return f"{self.prefix}:leases"

    def seen_redis(self, shard: str) -> str:
        """The run id of the Redis server the shard's engine last started on: a different one now means
        Redis restarted in between (and may have lost its last second)."""
        return f"{self.prefix}:engine:{_check_leaf('shard', shard)}:redis-run-id"

    def clean_stop(self) -> str:
        """The run id of the Redis server `scalper run` shut down cleanly, once every process had stopped:
        a restart from it lost nothing, and nothing was in flight."""
        return f"{self.prefix}:clean-stop"

    def cursor(self) -> str:
        return f"{self.prefix}:engine:cursor"

    def exchange(self) -> str:
        return f"{self.prefix}:exchange"

    def lockstep(self) -> str:
        """A replay's engine: the last tick it stepped on per symbol, and whether it is idle (lockstep)."""
        return f"{self.prefix}:engine:lockstep"

    def lockstep_on(self) -> str:
        """Set by a lockstep replay's feed: the engine then keeps `lockstep` up to date."""
        return f"{self.prefix}:engine:lockstep:on"

    def panic(self) -> str:
        return f"{self.prefix}:panic"

    def control(self) -> str:
        """Operator commands for the engines: manual close, manual entry."""
        return f"{self.prefix}:control"

    def control_reply(self, command_id: str) -> str:
        """The outcome of one operator command; its existence also marks the command as applied."""
        return f"{self.control()}:reply:{_check_leaf('command id', command_id)}"

    def bad_positions(self, symbol: str) -> str:
        """Ids of the symbol's positions whose hash cannot be parsed: flagged, left to their stops."""
        return f"{self.slot(symbol)}:quarantined"

    def transitions(self, symbol: str) -> str:
        """Transitions applied, by "from|to|trigger": in the symbol's slot, so the store's scripts count them
        as they apply them."""
        return f"{self.slot(symbol)}:metrics:transitions"

    def metric(self, name: str) -> str:
        """One counter family (orders, order-latency, corrections, dropped, reconnects, rate-limited)."""
        return f"{self.prefix}:metrics:{_check_leaf('metric', name)}"

    def restarts(self) -> str:
        """The supervisor's restarts of a child process, for `scalper notify`."""
        return f"{self.prefix}:restarts"

    def web_url(self) -> str:
        return f"{self.prefix}:web:url"

    def dead_letter(self) -> str:
        return f"{self.prefix}:dead-letter"

    def quarantined(self) -> str:
        return f"{self.prefix}:quarantined"

    def symbols(self) -> str:
        return f"{self.prefix}:symbols"

    def pos_symbol(self) -> str:
        return f"{self.prefix}:pos-symbol"

    def ledger(self, day: str) -> str:
        """The trade ledger of one UTC day (YYYYMMDD): a row per position that closed that day."""
        if len(day) != 8 or not day.isdigit():
            raise ValueError(f"invalid ledger day {day!r}: YYYYMMDD")
        return f"{self.prefix}:ledger:{{{day}}}"

    def ledger_days(self) -> str:
        return f"{self.prefix}:ledger:days"
