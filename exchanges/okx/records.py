"""OKX v5 records: the items of REST `data[]` and of WebSocket push `data[]`, as msgspec Structs.

Only fields we use are declared; OKX adds fields often and unknown ones are ignored. Numbers are Decimal
(or None for "") and ms timestamps int, via the aliases of `wire.py`. Decoding lives in `messages.py`.
"""

from __future__ import annotations

from decimal import Decimal

from exchanges.okx.wire import I64, Dec, Flag, Int, OptDec, OptInt, OptUDec, UDec, Wire, wire

_Tup = tuple  # records hold tuples (immutable) where the wire has arrays of objects

# --- records (REST data[] items and WS push data[] items) ---


@wire
class InstrumentRec(Wire):  # GET /api/v5/public/instruments
    inst_id: str
    inst_type: str
    tick_sz: UDec
    lot_sz: UDec
    min_sz: UDec
    ct_val: OptUDec = None  # "" for SPOT
    ct_mult: OptUDec = None
    ct_type: str = ""  # linear / inverse ("" for SPOT)
    ct_val_ccy: str = ""
    settle_ccy: str = ""
    base_ccy: str = ""
    quote_ccy: str = ""
    inst_family: str = ""
    lever: OptUDec = None  # max leverage
    max_lmt_sz: OptUDec = None
    max_mkt_sz: OptUDec = None
    state: str = ""
    list_time: OptInt = None


@wire
class BalanceDetail(Wire):
    ccy: str
    eq: Dec  # can be negative (a liability)
    avail_eq: OptDec = None
    avail_bal: OptDec = None
    cash_bal: OptDec = None
    frozen_bal: OptDec = None
    ord_frozen: OptDec = None
    upl: OptDec = None
    liab: OptDec = None
    mgn_ratio: OptDec = None
    u_time: OptInt = None


@wire
class AccountRec(Wire):  # GET /api/v5/account/balance, WS "account"
    u_time: Int
    total_eq: OptDec = None
    adj_eq: OptDec = None
    imr: OptDec = None
    mmr: OptDec = None
    mgn_ratio: OptDec = None  # account level: adjEq / mmr; forced liquidation at <= 1
    upl: OptDec = None
    details: _Tup[BalanceDetail, ...] = ()


@wire
class FundingBalance(Wire):  # GET /api/v5/asset/balances (funding account, not trading)
    ccy: str
    bal: Dec
    avail_bal: OptDec = None
    frozen_bal: OptDec = None


@wire
class PositionRec(Wire):  # GET /api/v5/account/positions, WS "positions"
    inst_id: str
    pos: Dec  # net mode: signed; long_short: >= 0
    u_time: Int
    inst_type: str = ""
    pos_side: str = ""  # net / long / short
    mgn_mode: str = ""
    avg_px: OptUDec = None
    mark_px: OptUDec = None
    last: OptUDec = None
    liq_px: OptDec = None  # estimate; "" when not applicable
    lever: OptUDec = None
    mgn_ratio: OptDec = None
    margin: OptDec = None
    imr: OptDec = None
    mmr: OptDec = None
    upl: OptDec = None
    upl_ratio: OptDec = None
    realized_pnl: OptDec = None
    pnl: OptDec = None
    fee: OptDec = None
    funding_fee: OptDec = None
    avail_pos: OptDec = None
    be_px: OptDec = None
    ccy: str = ""
    pos_id: str = ""
    trade_id: str = ""
    adl: str = ""
    c_time: OptInt = None


@wire
class PositionHistoryRec(Wire):  # GET /api/v5/account/positions-history
    inst_id: str
    u_time: Int
    inst_type: str = ""
    pos_id: str = ""
    mgn_mode: str = ""
    direction: str = ""
    type: str = ""  # 1 partly closed, 2 closed, 3 liquidation, ...
    lever: OptUDec = None
    open_avg_px: OptUDec = None
    close_avg_px: OptUDec = None
    open_max_pos: OptUDec = None
    close_total_pos: OptUDec = None
    pnl: OptDec = None
    realized_pnl: OptDec = None
    fee: OptDec = None
    funding_fee: OptDec = None
    liq_penalty: OptDec = None
    c_time: OptInt = None


@wire
class OrderRec(Wire):  # GET /api/v5/trade/order, orders-pending/-history, WS "orders"
    inst_id: str
    ord_id: str
    side: str
    ord_type: str
    state: str
    sz: UDec
    u_time: Int
    acc_fill_sz: UDec = Decimal(0)
    cl_ord_id: str = ""
    inst_type: str = ""
    pos_side: str = ""  # "" on the WS spot push, "net" on REST
    td_mode: str = ""
    px: OptUDec = None  # "" for market orders
    avg_px: OptUDec = None  # "" until the first fill
    fill_px: OptUDec = None
    fill_sz: OptUDec = None
    fill_time: OptInt = None
    fee: OptDec = None  # negative = charged
    fee_ccy: str = ""
    fill_fee: OptDec = None
    pnl: OptDec = None
    fill_pnl: OptDec = None
    lever: OptUDec = None
    reduce_only: Flag = False
    tag: str = ""
    trade_id: str = ""
    exec_type: str = ""  # T taker / M maker (WS)
    cancel_source: str = ""
    amend_result: str = ""
    code: str = ""  # WS only: error code of an amend/cancel attached to this push
    msg: str = ""
    tgt_ccy: str = ""
    c_time: OptInt = None
    algo_cl_ord_id: str = ""  # set on an order a triggered algo (our protective stop) placed


@wire
class AlgoOrderRec(Wire):  # GET /api/v5/trade/orders-algo-pending, WS "orders-algo"
    algo_id: str
    inst_id: str
    side: str
    ord_type: str  # conditional / oco / trigger / move_order_stop ...
    state: str  # live / pause / partially_effective / effective / canceled / order_failed
    algo_cl_ord_id: str = ""
    cl_ord_id: str = ""
    ord_id_list: _Tup[str, ...] = ()  # the orders it placed when it triggered
    inst_type: str = ""
    pos_side: str = ""
    td_mode: str = ""
    sz: OptUDec = None
    close_fraction: OptUDec = None
    trigger_px: OptDec = None
    sl_trigger_px: OptDec = None
    tp_trigger_px: OptDec = None
    sl_ord_px: OptDec = None  # "-1" = market on trigger
    tp_ord_px: OptDec = None
    ord_px: OptDec = None
    sl_trigger_px_type: str = ""
    reduce_only: Flag = False
    lever: OptUDec = None
    tag: str = ""
    fail_code: str = ""
    actual_sz: OptUDec = None
    trigger_time: OptInt = None
    c_time: OptInt = None
    u_time: OptInt = None


@wire
class OrderAck(Wire):  # place / cancel / amend (REST and WS op), algo place / cancel
    s_code: str
    s_msg: str = ""
    ord_id: str = ""
    cl_ord_id: str = ""
    algo_id: str = ""
    algo_cl_ord_id: str = ""
    tag: str = ""
    ts: OptInt = None
    sub_code: str = ""


@wire
class ClosePositionAck(Wire):  # POST /api/v5/trade/close-position
    inst_id: str
    pos_side: str = ""
    cl_ord_id: str = ""
    tag: str = ""


@wire
class LeverageAck(Wire):  # POST /api/v5/account/set-leverage
    lever: UDec
    mgn_mode: str
    inst_id: str = ""
    pos_side: str = ""


@wire
class AccountConfig(Wire):  # GET /api/v5/account/config
    pos_mode: str  # net_mode / long_short_mode
    uid: str = ""
    acct_lv: str = ""
    perm: str = ""


@wire
class ServerTime(Wire):  # GET /api/v5/public/time
    ts: Int


@wire
class MaxAvailSize(Wire):  # GET /api/v5/account/max-avail-size
    inst_id: str
    avail_buy: OptUDec = None
    avail_sell: OptUDec = None


@wire
class OpenInterest(Wire):  # GET /api/v5/public/open-interest
    inst_id: str
    oi: UDec
    ts: Int
    inst_type: str = ""
    oi_ccy: OptUDec = None
    oi_usd: OptUDec = None


@wire
class Fill(Wire):  # GET /api/v5/trade/fills(-history)
    inst_id: str
    trade_id: str
    ord_id: str
    side: str
    fill_px: UDec
    fill_sz: UDec
    ts: Int
    cl_ord_id: str = ""
    inst_type: str = ""
    pos_side: str = ""
    fee: OptDec = None
    fee_ccy: str = ""
    fill_pnl: OptDec = None
    exec_type: str = ""
    bill_id: str = ""
    fill_time: OptInt = None


@wire
class Ticker(Wire):  # WS "tickers", GET /api/v5/market/ticker
    inst_id: str
    ts: Int
    inst_type: str = ""
    last: OptUDec = None
    last_sz: OptUDec = None
    ask_px: OptUDec = None  # "" when the book side is empty
    ask_sz: OptUDec = None
    bid_px: OptUDec = None
    bid_sz: OptUDec = None
    open24h: OptUDec = None
    high24h: OptUDec = None
    low24h: OptUDec = None
    vol24h: OptUDec = None


@wire
class Trade(Wire):  # WS "trades", GET /api/v5/market/trades
    inst_id: str
    trade_id: str
    px: UDec
    sz: UDec
    side: str
    ts: Int
    count: OptInt = None  # WS: number of aggregated fills
    seq_id: I64 | None = None


@wire
class Level(Wire, array_like=True):  # ["px", "sz", "0" (deprecated), "number of orders"]
    px: UDec
    sz: UDec
    liq: str = ""
    orders: OptInt = None


@wire
class Book(Wire):  # WS books / books5 / bbo-tbt, GET /api/v5/market/books
    asks: _Tup[Level, ...]
    bids: _Tup[Level, ...]
    ts: Int
    inst_id: str = ""
    seq_id: I64 | None = None
    prev_seq_id: I64 | None = None  # -1 on a snapshot
    checksum: I64 | None = None  # deprecated (0)


@wire
class Candle(Wire, array_like=True):  # [ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]
    ts: Int
    open: UDec
    high: UDec
    low: UDec
    close: UDec
    vol: UDec
    vol_ccy: OptUDec = None
    vol_ccy_quote: OptUDec = None
    confirm: str = ""  # "0" bar still open, "1" closed

    @property
    def closed(self) -> bool:
        return self.confirm == "1"
