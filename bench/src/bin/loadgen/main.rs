//! loadgen: a one-thread WebSocket load generator for benchmarking rookery
//! and its peers. See bench/README.md.
//!
//! Every connection is a small state machine driven by one edge-triggered
//! mio poll loop. Frames are encoded (and masked) straight into a reused
//! per-connection output buffer and parsed in place from a reused input
//! buffer, so the steady state allocates nothing per message.

mod churn;
mod corpus;
mod hist;
mod sys;
mod tls;
mod ws;

use hist::Hist;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use rustls::ClientConnection;
use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use ws::{
    check_deflate_answer, check_response, head_end, parse_header, payload_header, Inflater, Out,
    Premasked, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, PREMASK_MIN,
};

/// Largest frame we accept from a server (a sanity bound, not a test).
const MAX_FRAME: usize = 16 << 20;
/// No message at all for this long while traffic should flow: give up.
const STALL: Duration = Duration::from_secs(5);
/// After the window, outstanding echoes / deliveries are waited for as long
/// as they keep arriving (none for DRAIN_IDLE: give up), at most DRAIN_MAX.
const DRAIN_IDLE: Duration = Duration::from_secs(2);
const DRAIN_MAX: Duration = Duration::from_secs(20);
/// How long to wait for the servers' close frames at the end.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

const USAGE: &str = "\
usage: loadgen SCENARIO [options]

scenarios:
  echo-small   100 connections x 16 in flight x 32-byte text (echo server)
  echo-rate    echo-small's connections and messages at a fixed offered rate
               (--rate, 50000 messages/s): the same load for every server,
               for server CPU per message and latency (echo server)
  echo-large   10 connections x 4 in flight x 64 KiB binary (echo server)
  fanout       1000 subscribers + 1 publisher, 64-byte texts (chat server)
  idle         10000 idle connections, server RSS per connection (chat server)
  churn        open and close --total connections in rounds of --round, server
               RSS after every round and after --quiet seconds (any server)

options:
  --url ws://127.0.0.1:PORT/PATH   target (loopback only)  [ws://127.0.0.1:1984/chat]
                       wss://... speaks TLS (rustls, ring); the server's
                       certificate is accepted unchecked (churn: ws:// only)
  --server-pid PID     read the server's CPU time and RSS from /proc/PID
  --warmup SECS        warm-up before measuring              [1]
  --duration SECS      measurement window                    [5]
  --hold SECS          idle: how long to keep connections open [3]
  --connections N      connections (fanout: subscribers)
  --split-to ws://127.0.0.1:PORT/PATH   fanout: the second half of the subscribers
                       connect to this server instead (another node of a cluster)
  --inflight N         messages in flight per connection (fanout: publisher window;
                       echo-rate: at most that many outstanding per connection)
  --rate N             echo-rate: messages per second offered, in all [50000]
  --size BYTES         payload size (>= 16)
  --text | --binary    payload type
  --welcome | --no-welcome   wait for a welcome text on every connection
                       before starting (default: on for fanout and idle)
  --payload pattern|chat|json   fanout: what the publisher sends [pattern]:
                       pattern: --size bytes of pseudo-random letters;
                       chat: varied chat lines of 60-120 bytes (plain and JSON);
                       json: JSON documents of 3.9-4 KiB (a room's state)
  --deflate            offer permessage-deflate (client_max_window_bits), require
                       it in the answer (with server_no_context_takeover) and
                       inflate messages with RSV1; we send plain frames
  --v1                 fanout: offer the chat's rookery.v1 subprotocol and read its
                       JSON envelopes (pattern payload only)
  --max-pending N      handshakes in progress at once         [64]
  --connect-timeout SECS                                      [30]

churn options (with --url, --server-pid, --max-pending [128]):
  --total N            connections in all                    [1000000]
  --round N            connections open at once per round    [10000]
  --close handshake|tcp   close frame + server's close + FIN, or
                       a bare TCP close right after the upgrade [handshake]
  --quiet SECS         after the last round, RSS once a second for SECS [20]
  --round-timeout SECS a round taking longer fails the run   [60]
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    EchoSmall,
    EchoRate,
    EchoLarge,
    Fanout,
    Idle,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::EchoSmall => "echo-small",
            Scenario::EchoRate => "echo-rate",
            Scenario::EchoLarge => "echo-large",
            Scenario::Fanout => "fanout",
            Scenario::Idle => "idle",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Scenario::EchoSmall,
            Scenario::EchoRate,
            Scenario::EchoLarge,
            Scenario::Fanout,
            Scenario::Idle,
        ]
        .into_iter()
        .find(|sc| sc.name() == s)
    }

    fn is_echo(self) -> bool {
        matches!(
            self,
            Scenario::EchoSmall | Scenario::EchoRate | Scenario::EchoLarge
        )
    }
}

/// `fanout --payload`: what the publisher's messages carry after the header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Payload {
    Pattern,
    Chat,
    Json,
}

struct Config {
    scenario: Scenario,
    payload: Payload,
    /// `--deflate`: offer permessage-deflate and inflate what comes compressed.
    deflate: bool,
    addr: SocketAddrV4,
    /// fanout `--split-to`: the second half of the subscribers connect
    /// here (another node of a cluster); the publisher stays on `addr`.
    addr2: Option<SocketAddrV4>,
    url: String,
    /// `wss://`: the shared client configuration.
    tls: Option<tls::Tls>,
    request: Vec<u8>,
    server_pid: Option<u32>,
    warmup: Duration,
    duration: Duration,
    hold: Duration,
    conns: usize,
    inflight: usize,
    /// echo-rate: messages per second offered (0: closed loop, every echo
    /// is replaced at once).
    rate: u64,
    size: usize,
    binary: bool,
    welcome: bool,
    /// `--v1`: offer rookery.v1 and unwrap its envelopes.
    v1: bool,
    max_pending: usize,
    connect_timeout: Duration,
}

fn parse_args() -> Result<Config, String> {
    let mut args = std::env::args().skip(1);
    let first = args.next().ok_or("missing SCENARIO")?;
    if first == "--help" || first == "-h" {
        print!("{USAGE}");
        std::process::exit(0);
    }
    let scenario = Scenario::parse(&first).ok_or_else(|| format!("unknown scenario '{first}'"))?;
    let (conns, inflight, size, binary) = match scenario {
        Scenario::EchoSmall | Scenario::EchoRate => (100, 16, 32, false),
        Scenario::EchoLarge => (10, 4, 64 * 1024, true),
        Scenario::Fanout => (1000, 128, 64, false),
        Scenario::Idle => (10_000, 0, 16, false),
    };
    let mut cfg = Config {
        scenario,
        payload: Payload::Pattern,
        deflate: false,
        addr: "127.0.0.1:1984".parse().unwrap(),
        addr2: None,
        url: String::new(),
        tls: None,
        request: Vec::new(),
        server_pid: None,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(5),
        hold: Duration::from_secs(3),
        conns,
        inflight,
        rate: if scenario == Scenario::EchoRate {
            50_000
        } else {
            0
        },
        size,
        binary,
        welcome: matches!(scenario, Scenario::Fanout | Scenario::Idle),
        v1: false,
        max_pending: 64,
        connect_timeout: Duration::from_secs(30),
    };
    let mut url = "ws://127.0.0.1:1984/chat".to_string();
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let secs = |v: String, name: &str| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name}: bad number of seconds '{v}'"))
        };
        let num = |v: String, name: &str| -> Result<usize, String> {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: bad number '{v}'"))
        };
        match flag.as_str() {
            "--url" => url = value("--url")?,
            "--split-to" => {
                let v = value("--split-to")?;
                cfg.addr2 = Some(parse_url(&v)?.0);
            }
            "--server-pid" => {
                let v = value("--server-pid")?;
                cfg.server_pid = Some(v.parse().map_err(|_| format!("bad pid '{v}'"))?);
            }
            "--warmup" => cfg.warmup = secs(value(&flag)?, &flag)?,
            "--duration" => cfg.duration = secs(value(&flag)?, &flag)?,
            "--hold" => cfg.hold = secs(value(&flag)?, &flag)?,
            "--connect-timeout" => cfg.connect_timeout = secs(value(&flag)?, &flag)?,
            "--connections" => cfg.conns = num(value(&flag)?, &flag)?,
            "--inflight" => cfg.inflight = num(value(&flag)?, &flag)?,
            "--rate" => cfg.rate = num(value(&flag)?, &flag)?.max(1) as u64,
            "--size" => cfg.size = num(value(&flag)?, &flag)?,
            "--max-pending" => cfg.max_pending = num(value(&flag)?, &flag)?.max(1),
            "--payload" => {
                let v = value(&flag)?;
                cfg.payload = match v.as_str() {
                    "pattern" => Payload::Pattern,
                    "chat" => Payload::Chat,
                    "json" => Payload::Json,
                    _ => return Err(format!("--payload: pattern, chat or json, not '{v}'")),
                };
            }
            "--deflate" => cfg.deflate = true,
            "--v1" => cfg.v1 = true,
            "--text" => cfg.binary = false,
            "--binary" => cfg.binary = true,
            "--welcome" => cfg.welcome = true,
            "--no-welcome" => cfg.welcome = false,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option '{flag}'")),
        }
    }
    let (addr, hostport, path, secure) = parse_url(&url)?;
    cfg.addr = addr;
    cfg.tls = secure.then(|| tls::Tls::new(*addr.ip()));
    if cfg.size < 16 {
        return Err("--size must be at least 16 (the payload header)".into());
    }
    if cfg.conns == 0 {
        return Err("--connections must be at least 1".into());
    }
    if scenario != Scenario::Idle && cfg.inflight == 0 {
        return Err("--inflight must be at least 1".into());
    }
    if scenario != Scenario::EchoRate {
        cfg.rate = 0;
    }
    if scenario == Scenario::Fanout && cfg.binary {
        return Err("fanout relays text messages only".into());
    }
    if scenario != Scenario::Fanout && cfg.payload != Payload::Pattern {
        return Err("--payload is for fanout only".into());
    }
    if cfg.v1 && (scenario != Scenario::Fanout || cfg.payload != Payload::Pattern) {
        return Err("--v1 is for fanout with the pattern payload only".into());
    }
    cfg.request = ws::handshake_request_with(hostport, path, cfg.deflate);
    if cfg.v1 {
        // Before the blank line that ends the head.
        cfg.request.truncate(cfg.request.len() - 2);
        cfg.request
            .extend_from_slice(b"Sec-WebSocket-Protocol: rookery.v1\r\n\r\n");
    }
    cfg.url = url;
    Ok(cfg)
}

/// Splits `ws://ADDR:PORT/PATH` (or `wss://`) into the address (loopback
/// only), the `ADDR:PORT` text, the path and whether it is `wss`.
fn parse_url(url: &str) -> Result<(SocketAddrV4, &str, &str, bool), String> {
    let (rest, secure) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true)
    } else {
        return Err(format!("--url must start with ws:// or wss:// ('{url}')"));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddrV4 = hostport
        .parse()
        .map_err(|_| format!("--url: need an IPv4 address and port, got '{hostport}'"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to load {addr}: only loopback (127.0.0.0/8) targets are allowed"
        ));
    }
    Ok((addr, hostport, path, secure))
}

/// The churn scenario's command line (see [`churn`]).
fn parse_churn_args(args: impl Iterator<Item = String>) -> Result<churn::ChurnConfig, String> {
    let mut args = args;
    let mut url = "ws://127.0.0.1:1984/chat".to_string();
    let mut server_pid = None;
    let mut total = 1_000_000usize;
    let mut round = 10_000usize;
    let mut close = churn::CloseMode::Handshake;
    let mut quiet = Duration::from_secs(20);
    let mut max_pending = 128usize;
    let mut round_timeout = Duration::from_secs(60);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let secs = |v: String| -> Result<Duration, String> {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag}: bad number of seconds '{v}'"))
        };
        let num = |v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: bad number '{v}'"))
        };
        match flag.as_str() {
            "--url" => url = value()?,
            "--server-pid" => {
                let v = value()?;
                server_pid = Some(v.parse().map_err(|_| format!("bad pid '{v}'"))?);
            }
            "--total" => total = num(value()?)?,
            "--round" => round = num(value()?)?,
            "--close" => {
                let v = value()?;
                close = churn::CloseMode::parse(&v)
                    .ok_or_else(|| format!("--close: 'handshake' or 'tcp', not '{v}'"))?;
            }
            "--quiet" => quiet = secs(value()?)?,
            "--max-pending" => max_pending = num(value()?)?.max(1),
            "--round-timeout" => round_timeout = secs(value()?)?,
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(format!("unknown option '{flag}'")),
        }
    }
    if total == 0 || round == 0 {
        return Err("--total and --round must be at least 1".into());
    }
    let (addr, hostport, path, secure) = parse_url(&url)?;
    if secure {
        return Err("churn: ws:// only (no TLS client there)".into());
    }
    Ok(churn::ChurnConfig {
        addr,
        request: ws::handshake_request(hostport, path),
        server_pid,
        total,
        round,
        close,
        quiet,
        max_pending,
        round_timeout,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Connecting,
    Handshake,
    Open,
    Closing,
    Closed,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Echo,
    Publisher,
    Subscriber,
    Idle,
}

/// Per-connection application state.
struct App {
    role: Role,
    id: u32,
    seen_data: bool,
    send_seq: u64,
    recv_seq: u64,
    /// Echo: send instants of in-flight messages, indexed by seq (ring).
    times: Vec<Instant>,
}

struct Conn {
    sock: Option<TcpStream>,
    /// `wss://`: the TLS session between `sock` and `rbuf` / `out`.
    tls: Option<Box<ClientConnection>>,
    state: State,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    out: Out,
    frag: Vec<u8>,
    frag_op: u8,
    in_frag: bool,
    /// The message being reassembled came with RSV1 (compressed).
    frag_z: bool,
    /// Wire bytes (frame headers and payloads) of the message so far.
    frag_wire: u64,
    /// permessage-deflate was agreed on this connection.
    deflate: bool,
    app: App,
}

/// Fan-out bookkeeping: the publisher keeps at most `window` messages that
/// have not yet reached every live subscriber.
struct Fanout {
    window: u64,
    mask: u64,
    /// Deliveries still due, per message slot.
    pending: Vec<u32>,
    /// Publish instant per message slot.
    times: Vec<Instant>,
    sent: u64,
    completed: u64,
    live: u32,
    missed: u64,
    pub_id: u32,
    pub_idx: usize,
    started: bool,
}

struct Ctx {
    data_op: u8,
    size: usize,
    pattern: Vec<u8>,
    /// fanout `--payload chat|json`: message `seq` carries `bodies[seq %
    /// len]` after its header (`None`: `pattern[16..size]`).
    bodies: Option<Vec<Vec<u8>>>,
    /// `--deflate`: the answer must take the offer.
    want_deflate: bool,
    /// `--v1`: messages come as rookery.v1 envelopes.
    v1: bool,
    /// `--deflate`: the shared inflater, behind a memo of recent messages.
    memo: Memo,
    /// Wire bytes of the counted messages (frame headers + payloads as
    /// received, compressed or not), and how many of them came compressed.
    wire_bytes: u64,
    compressed: u64,
    /// Large bodies: pre-masked copies of `pattern[16..size]`.
    premasked: Option<Premasked>,
    wait_welcome: bool,
    sending: bool,
    measuring: bool,
    msgs: u64,
    bytes: u64,
    hist: Hist,
    outstanding: u64,
    errors: u64,
    pings: u64,
    welcomes: u64,
    unexpected: u64,
    server_closes: u64,
    dropped: u64,
    pending: usize,
    ready: usize,
    closed: usize,
    last_progress: Instant,
    fatal: Option<String>,
    fan: Fanout,
    /// echo-rate: messages per second offered (0: closed loop).
    rate: u64,
    /// echo-rate: when pacing began, messages paced since, the next
    /// connection in turn, and the per-connection cap on outstanding ones.
    pace_start: Instant,
    paced: u64,
    pace_next: usize,
    pace_cap: u64,
    /// `wss://`: protocol version and cipher suite of the first session.
    tls_info: Option<String>,
}

impl Ctx {
    /// What message `seq` of the fan-out carries after its header.
    #[inline]
    fn body(&self, seq: u64) -> &[u8] {
        match &self.bodies {
            Some(b) => &b[(seq % b.len() as u64) as usize],
            None => &self.pattern[16..self.size],
        }
    }

    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.errors <= 10 {
            eprintln!("loadgen: error: {}", what());
        } else if self.errors == 11 {
            eprintln!("loadgen: (further errors not shown)");
        }
    }
}

/// Outcome of handling input on a connection.
enum Step {
    Go,
    /// Our close handshake finished (or the peer went away while closing).
    Closed,
    Fail(String),
}

#[inline]
fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// echo-rate: sends what the schedule owes by now (message `k` is due at
/// `pace_start + k / rate`), one message per connection in turn, skipping
/// connections that already have `pace_cap` outstanding. A message goes out
/// stamped with its due instant, not the instant it left: a server that
/// falls behind shows in the latency instead of slowing the schedule down
/// (no coordinated omission).
fn pace(conns: &mut [Conn], reg: &Registry, ctx: &mut Ctx) {
    let now = Instant::now();
    let due = (now.saturating_duration_since(ctx.pace_start).as_nanos() * ctx.rate as u128
        / 1_000_000_000) as u64;
    let n = conns.len();
    let mut skipped = 0;
    while ctx.paced < due && skipped < n {
        let c = &mut conns[ctx.pace_next];
        ctx.pace_next = (ctx.pace_next + 1) % n;
        if c.state != State::Open || c.app.send_seq - c.app.recv_seq >= ctx.pace_cap {
            skipped += 1;
            continue;
        }
        skipped = 0;
        let at = ctx.pace_start
            + Duration::from_nanos((ctx.paced as u128 * 1_000_000_000 / ctx.rate as u128) as u64);
        send_echo(&mut c.app, &mut c.out, ctx, at);
        ctx.paced += 1;
        flush(c, reg, ctx);
    }
}

fn send_echo(app: &mut App, out: &mut Out, ctx: &mut Ctx, now: Instant) {
    let hdr = payload_header(app.id, app.send_seq);
    match ctx.premasked.as_mut() {
        Some(pm) => {
            let (key, body) = pm.next();
            out.frame_premasked(ctx.data_op, &hdr, key, body);
        }
        None => out.frame(ctx.data_op, &hdr, &ctx.pattern[16..ctx.size]),
    }
    let m = app.times.len() - 1;
    app.times[app.send_seq as usize & m] = now;
    app.send_seq += 1;
    ctx.outstanding += 1;
}

/// The wire form of a message that arrived: its frames' bytes, and whether
/// it was compressed.
#[derive(Clone, Copy)]
struct Wire {
    bytes: u64,
    compressed: bool,
}

/// A complete data message arrived on a connection (inflated, if it was
/// compressed).
/// The text of a rookery.v1 `message` envelope (the pattern needs no JSON
/// escape); anything else (the welcome) as it came.
fn unwrap_v1(payload: &[u8]) -> &[u8] {
    const KEY: &[u8] = b",\"text\":\"";
    if !payload.starts_with(b"{\"type\":\"message\"") || !payload.ends_with(b"\"}") {
        return payload;
    }
    match payload.windows(KEY.len()).position(|w| w == KEY) {
        Some(at) => &payload[at + KEY.len()..payload.len() - 2],
        None => payload,
    }
}

fn on_data(
    app: &mut App,
    out: &mut Out,
    ctx: &mut Ctx,
    op: u8,
    payload: &[u8],
    wire: Wire,
    now: Instant,
) {
    let payload = if ctx.v1 && op == OP_TEXT {
        unwrap_v1(payload)
    } else {
        payload
    };
    if !app.seen_data {
        app.seen_data = true;
        // A chat server greets every connection first: skip that text.
        if op == OP_TEXT && parse_header(payload).is_none() {
            ctx.welcomes += 1;
            if ctx.wait_welcome {
                ctx.ready += 1;
            }
            return;
        }
        if ctx.wait_welcome {
            let id = app.id;
            ctx.error(|| format!("conn {id}: first message was not a welcome text"));
            ctx.ready += 1;
        }
    }
    match app.role {
        Role::Echo => {
            if app.recv_seq >= app.send_seq {
                let id = app.id;
                ctx.error(|| format!("conn {id}: message received that was never sent"));
                return;
            }
            let ok = op == ctx.data_op
                && payload.len() == ctx.size
                && payload[..16] == payload_header(app.id, app.recv_seq)
                && payload[16..] == ctx.pattern[16..ctx.size];
            if !ok {
                let (id, seq, len) = (app.id, app.recv_seq, payload.len());
                ctx.error(|| {
                    format!(
                        "conn {id} seq {seq}: echo mismatch (opcode {op}, {len} bytes, starts {:?})",
                        String::from_utf8_lossy(&payload[..len.min(16)])
                    )
                });
            }
            let sent = app.times[app.recv_seq as usize & (app.times.len() - 1)];
            app.recv_seq += 1;
            ctx.outstanding -= 1;
            ctx.last_progress = now;
            if ctx.measuring {
                ctx.msgs += 1;
                ctx.bytes += payload.len() as u64;
                ctx.wire_bytes += wire.bytes;
                ctx.compressed += u64::from(wire.compressed);
                ctx.hist.record(nanos(now - sent));
            }
            if ctx.sending && ctx.rate == 0 {
                send_echo(app, out, ctx, now);
            }
        }
        Role::Subscriber => {
            let expected = app.recv_seq;
            let f = &ctx.fan;
            let seq = if payload.len() >= 16 && payload[..16] == payload_header(f.pub_id, expected)
            {
                Some(expected)
            } else {
                match parse_header(payload) {
                    Some((id, low)) if id == f.pub_id => {
                        Some((expected & !0xFFFF_FFFF) | low as u64)
                    }
                    _ => None,
                }
            };
            let Some(seq) = seq.filter(|&s| s >= expected && s < f.sent) else {
                let id = app.id;
                ctx.error(|| format!("subscriber {id}: unexpected or out-of-order message (expected seq {expected})"));
                return;
            };
            let body_ok = op == OP_TEXT && payload.len() >= 16 && payload[16..] == *ctx.body(seq);
            let f = &mut ctx.fan;
            for m in expected..seq {
                f.pending[(m & f.mask) as usize] -= 1;
                f.missed += 1;
            }
            f.pending[(seq & f.mask) as usize] -= 1;
            let sent = f.times[(seq & f.mask) as usize];
            app.recv_seq = seq + 1;
            ctx.last_progress = now;
            if ctx.measuring {
                ctx.msgs += 1;
                ctx.bytes += payload.len() as u64;
                ctx.wire_bytes += wire.bytes;
                ctx.compressed += u64::from(wire.compressed);
                ctx.hist.record(nanos(now - sent));
            }
            if seq != expected {
                let id = app.id;
                ctx.error(|| format!("subscriber {id}: missed seq {expected}..{seq}"));
            }
            if !body_ok {
                let (id, len, z) = (app.id, payload.len(), wire.compressed);
                let want = 16 + ctx.body(seq).len();
                ctx.error(|| {
                    format!(
                        "subscriber {id} seq {seq}: payload mismatch (opcode {op}, {len} bytes, {want} expected, compressed {z}, {} wire bytes)",
                        wire.bytes
                    )
                });
            }
        }
        Role::Publisher => {
            // The sender gets its own messages back, in order.
            let ok = op == OP_TEXT
                && payload.len() == 16 + ctx.body(app.recv_seq).len()
                && payload[..16] == payload_header(app.id, app.recv_seq);
            if !ok {
                let (id, seq) = (app.id, app.recv_seq);
                ctx.error(|| {
                    format!("publisher {id}: own message {seq} not relayed back in order")
                });
            }
            app.recv_seq += 1;
        }
        Role::Idle => ctx.unexpected += 1,
    }
}

/// Messages recently inflated, by their compressed bytes. A broadcast
/// reaches every subscriber as the same compressed bytes, and one loadgen
/// thread inflating each copy again (up to 1,000 times) would be the
/// bottleneck of the run, not the server: each distinct compressed payload
/// is inflated once, and a copy that compares equal, byte for byte, to one
/// already inflated is given the same output, which is then verified like
/// any other message. (Real clients inflate on their own CPUs.)
struct Memo {
    inflater: Inflater,
    /// (compressed payload, inflated message), a ring.
    slots: Vec<(Vec<u8>, Vec<u8>)>,
    index: HashMap<u64, usize>,
    next: usize,
    inflations: u64,
    hits: u64,
}

/// Slots of [`Memo`]: more than the messages in flight in the fan-out.
const MEMO_SLOTS: usize = 1024;

impl Memo {
    fn new() -> Self {
        Memo {
            inflater: Inflater::new(),
            slots: Vec::new(),
            index: HashMap::new(),
            next: 0,
            inflations: 0,
            hits: 0,
        }
    }

    /// A hash of all of `z`, eight bytes at a time (equal keys are then
    /// compared in full). Not just its ends: a dynamic Huffman block starts
    /// with code tables that similar messages share.
    fn key(z: &[u8]) -> u64 {
        let mut h = 0x9E37_79B9_7F4A_7C15 ^ z.len() as u64;
        let mut words = z.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            h = (h ^ v).wrapping_mul(0xFF51_AFD7_ED55_8CCD).rotate_left(29);
        }
        for &b in words.remainder() {
            h = (h ^ b as u64)
                .wrapping_mul(0xFF51_AFD7_ED55_8CCD)
                .rotate_left(29);
        }
        h
    }

    /// The slot holding the inflated form of `z`.
    fn get(&mut self, z: &[u8]) -> Result<usize, String> {
        let k = Self::key(z);
        if let Some(&i) = self.index.get(&k) {
            if self.slots[i].0 == z {
                self.hits += 1;
                return Ok(i);
            }
        }
        let i = self.next;
        self.next = (i + 1) % MEMO_SLOTS;
        if i == self.slots.len() {
            self.slots.push((Vec::new(), Vec::new()));
        } else {
            let old = Self::key(&self.slots[i].0);
            if self.index.get(&old) == Some(&i) {
                self.index.remove(&old);
            }
        }
        let slot = &mut self.slots[i];
        slot.0.clear();
        if let Err(e) = self.inflater.inflate(z, &mut slot.1, MAX_FRAME) {
            slot.1.clear();
            return Err(e);
        }
        slot.0.extend_from_slice(z);
        self.index.insert(k, i);
        self.inflations += 1;
        Ok(i)
    }
}

/// A complete compressed message: inflates it (or finds it inflated) and
/// hands it on to [`on_data`].
fn on_compressed(
    app: &mut App,
    out: &mut Out,
    ctx: &mut Ctx,
    op: u8,
    z: &[u8],
    wire: Wire,
    now: Instant,
) -> Result<(), String> {
    let i = ctx.memo.get(z)?;
    let msg = std::mem::take(&mut ctx.memo.slots[i].1);
    on_data(app, out, ctx, op, &msg, wire, now);
    ctx.memo.slots[i].1 = msg;
    Ok(())
}

/// Parses what is buffered: the handshake response, then frames.
fn process(c: &mut Conn, ctx: &mut Ctx, now: Instant) -> Step {
    if c.state == State::Handshake {
        let data = &c.rbuf[c.rstart..c.rend];
        match head_end(data) {
            None if data.len() > 16 * 1024 => {
                return Step::Fail("handshake response head too long".into())
            }
            None => return Step::Go,
            Some(end) => {
                if let Err(e) = check_response(&data[..end]) {
                    return Step::Fail(e);
                }
                if ctx.want_deflate {
                    match check_deflate_answer(&data[..end]) {
                        Ok(true) => c.deflate = true,
                        Ok(false) => {
                            return Step::Fail(
                                "--deflate: the server did not take permessage-deflate".into(),
                            )
                        }
                        Err(e) => return Step::Fail(format!("--deflate: {e}")),
                    }
                }
                c.rstart += end;
                c.state = State::Open;
                ctx.pending -= 1;
                if !ctx.wait_welcome {
                    ctx.ready += 1;
                }
            }
        }
    }
    loop {
        let avail = c.rend - c.rstart;
        if avail < 2 {
            break;
        }
        let b0 = c.rbuf[c.rstart];
        let b1 = c.rbuf[c.rstart + 1];
        // RSV1 marks a compressed message, on its first frame only, when
        // permessage-deflate was agreed (RFC 7692 section 6).
        let rsv1_ok = c.deflate && matches!(b0 & 0x0F, OP_TEXT | OP_BINARY);
        if b0 & 0x70 != 0 && !(b0 & 0x70 == 0x40 && rsv1_ok) {
            return Step::Fail("frame with reserved bits set".into());
        }
        if b1 & 0x80 != 0 {
            return Step::Fail("masked frame from the server".into());
        }
        let (hl, len) = match b1 & 0x7F {
            126 => {
                if avail < 4 {
                    break;
                }
                let b = &c.rbuf[c.rstart + 2..c.rstart + 4];
                (4, u16::from_be_bytes([b[0], b[1]]) as usize)
            }
            127 => {
                if avail < 10 {
                    break;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&c.rbuf[c.rstart + 2..c.rstart + 10]);
                let l = u64::from_be_bytes(b);
                if l > MAX_FRAME as u64 {
                    return Step::Fail(format!("frame of {l} bytes"));
                }
                (10, l as usize)
            }
            l => (2, l as usize),
        };
        let total = hl + len;
        if avail < total {
            // Make room for the whole frame so the next reads can finish it.
            if c.rbuf.len() - c.rstart < total {
                c.rbuf.copy_within(c.rstart..c.rend, 0);
                c.rend -= c.rstart;
                c.rstart = 0;
                if c.rbuf.len() < total {
                    c.rbuf.resize(total.next_power_of_two(), 0);
                }
            }
            break;
        }
        let (p0, p1) = (c.rstart + hl, c.rstart + total);
        c.rstart = p1;
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let z = b0 & 0x40 != 0;
        match op {
            OP_PING => {
                ctx.pings += 1;
                c.out.frame(OP_PONG, &c.rbuf[p0..p1], &[]);
            }
            OP_PONG => {}
            OP_CLOSE => {
                if c.state == State::Closing {
                    return Step::Closed;
                }
                let code = if len >= 2 {
                    u16::from_be_bytes([c.rbuf[p0], c.rbuf[p0 + 1]])
                } else {
                    1005
                };
                let echo = if len >= 2 {
                    &c.rbuf[p0..p0 + 2]
                } else {
                    &[][..]
                };
                c.out.frame(OP_CLOSE, echo, &[]);
                if let Some(s) = c.sock.as_ref() {
                    let _ = c.out.flush(s);
                }
                ctx.server_closes += 1;
                return Step::Fail(format!("server closed the connection (code {code})"));
            }
            OP_TEXT | OP_BINARY => {
                if c.in_frag {
                    return Step::Fail("data frame inside a fragmented message".into());
                }
                if !fin {
                    c.frag.clear();
                    c.frag.extend_from_slice(&c.rbuf[p0..p1]);
                    c.frag_op = op;
                    c.in_frag = true;
                    c.frag_z = z;
                    c.frag_wire = total as u64;
                } else if c.state == State::Open {
                    let wire = Wire {
                        bytes: total as u64,
                        compressed: z,
                    };
                    if z {
                        let (app, out) = (&mut c.app, &mut c.out);
                        if let Err(e) = on_compressed(app, out, ctx, op, &c.rbuf[p0..p1], wire, now)
                        {
                            return Step::Fail(format!("compressed message of {len} bytes: {e}"));
                        }
                    } else {
                        on_data(&mut c.app, &mut c.out, ctx, op, &c.rbuf[p0..p1], wire, now);
                    }
                }
            }
            OP_CONT => {
                if !c.in_frag {
                    return Step::Fail("continuation frame without a message".into());
                }
                c.frag.extend_from_slice(&c.rbuf[p0..p1]);
                c.frag_wire += total as u64;
                if fin {
                    c.in_frag = false;
                    if c.state == State::Open {
                        let wire = Wire {
                            bytes: c.frag_wire,
                            compressed: c.frag_z,
                        };
                        if c.frag_z {
                            let (app, out, op) = (&mut c.app, &mut c.out, c.frag_op);
                            if let Err(e) = on_compressed(app, out, ctx, op, &c.frag, wire, now) {
                                let n = c.frag.len();
                                return Step::Fail(format!(
                                    "compressed fragmented message of {n} bytes: {e}"
                                ));
                            }
                        } else {
                            on_data(&mut c.app, &mut c.out, ctx, c.frag_op, &c.frag, wire, now);
                        }
                    }
                }
            }
            _ => return Step::Fail(format!("unknown opcode {op}")),
        }
    }
    if c.rstart == c.rend {
        c.rstart = 0;
        c.rend = 0;
    }
    Step::Go
}

/// Makes room at the end of the input buffer (moves the unparsed rest down,
/// or grows it).
fn make_room(c: &mut Conn) {
    if c.rend == c.rbuf.len() {
        if c.rstart > 0 {
            c.rbuf.copy_within(c.rstart..c.rend, 0);
            c.rend -= c.rstart;
            c.rstart = 0;
        } else {
            let n = c.rbuf.len() * 2;
            c.rbuf.resize(n, 0);
        }
    }
}

/// Reads until the socket is drained (edge-triggered), processing as we go.
fn read_input(c: &mut Conn, ctx: &mut Ctx, now: Instant) -> Step {
    if c.tls.is_some() {
        return read_input_tls(c, ctx, now);
    }
    loop {
        make_room(c);
        let space = c.rbuf.len() - c.rend;
        let Some(sock) = c.sock.as_ref() else {
            return Step::Closed;
        };
        let r = (&*sock).read(&mut c.rbuf[c.rend..]);
        match r {
            Ok(0) => {
                return if c.state == State::Closing {
                    Step::Closed
                } else {
                    Step::Fail("connection closed by the server (EOF)".into())
                }
            }
            Ok(n) => {
                c.rend += n;
                match process(c, ctx, now) {
                    Step::Go => {}
                    other => return other,
                }
                // A short read means the socket is drained; the next data
                // to arrive raises a new edge.
                if n < space {
                    return Step::Go;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Go,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return if c.state == State::Closing {
                    Step::Closed
                } else {
                    Step::Fail(format!("read: {e}"))
                }
            }
        }
    }
}

/// `wss://`: reads ciphertext until the socket would block, decrypting and
/// processing the plaintext after every read (so rustls' received-plaintext
/// buffer never fills).
fn read_input_tls(c: &mut Conn, ctx: &mut Ctx, now: Instant) -> Step {
    let closing = |c: &Conn, what: String| {
        if c.state == State::Closing {
            Step::Closed
        } else {
            Step::Fail(what)
        }
    };
    loop {
        let (Some(mut sock), Some(tls)) = (c.sock.as_ref(), c.tls.as_mut()) else {
            return Step::Closed;
        };
        let mut eof = match tls.read_tls(&mut sock) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Go,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return closing(c, format!("read: {e}")),
        };
        if let Err(e) = tls.process_new_packets() {
            return closing(c, format!("TLS: {e}"));
        }
        loop {
            make_room(c);
            let Some(tls) = c.tls.as_mut() else {
                return Step::Closed;
            };
            match tls.reader().read(&mut c.rbuf[c.rend..]) {
                // close_notify, and all plaintext before it read.
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.rend += n;
                    match process(c, ctx, now) {
                        Step::Go => {}
                        other => return other,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // TCP closed without close_notify: reported once drained.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    eof = true;
                    break;
                }
                Err(e) => return closing(c, format!("TLS read: {e}")),
            }
        }
        if ctx.tls_info.is_none() {
            ctx.tls_info = c.tls.as_deref().and_then(tls::describe);
        }
        if eof {
            return closing(c, "connection closed by the server (EOF)".into());
        }
    }
}

/// Takes a connection out of play, accounting for what it still owed.
fn finish(c: &mut Conn, reg: &Registry, ctx: &mut Ctx, failure: Option<String>) {
    if c.state == State::Closed {
        return;
    }
    if matches!(c.state, State::Connecting | State::Handshake) {
        ctx.pending -= 1;
    }
    if let Some(reason) = failure {
        ctx.dropped += 1;
        let id = c.app.id;
        ctx.error(|| format!("conn {id}: {reason}"));
        if c.state == State::Open {
            match c.app.role {
                Role::Echo => ctx.outstanding -= c.app.send_seq - c.app.recv_seq,
                Role::Subscriber => {
                    let f = &mut ctx.fan;
                    if f.started {
                        for m in c.app.recv_seq..f.sent {
                            f.pending[(m & f.mask) as usize] -= 1;
                            f.missed += 1;
                        }
                        f.live -= 1;
                    }
                }
                Role::Publisher => ctx.fatal = Some("publisher connection lost".into()),
                Role::Idle => {}
            }
        }
    }
    if let Some(mut s) = c.sock.take() {
        let _ = reg.deregister(&mut s);
    }
    c.tls = None;
    c.state = State::Closed;
    ctx.closed += 1;
}

fn handle_event(
    c: &mut Conn,
    reg: &Registry,
    ctx: &mut Ctx,
    readable: bool,
    writable: bool,
    request: &[u8],
) {
    if c.state == State::Closed {
        return;
    }
    let now = Instant::now();
    if writable {
        c.out.blocked = false;
    }
    if c.state == State::Connecting {
        let Some(sock) = c.sock.as_ref() else { return };
        match sock.take_error() {
            Ok(Some(e)) | Err(e) => return finish(c, reg, ctx, Some(format!("connect: {e}"))),
            Ok(None) => {}
        }
        match sock.peer_addr() {
            Ok(_) => {
                c.state = State::Handshake;
                c.out.buf.extend_from_slice(request);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => return finish(c, reg, ctx, Some(format!("connect: {e}"))),
        }
    }
    if readable {
        match read_input(c, ctx, now) {
            Step::Go => {}
            Step::Closed => return finish(c, reg, ctx, None),
            Step::Fail(why) => return finish(c, reg, ctx, Some(why)),
        }
    }
    flush(c, reg, ctx);
}

fn flush(c: &mut Conn, reg: &Registry, ctx: &mut Ctx) {
    let wants_tls = c.tls.as_ref().is_some_and(|t| t.wants_write());
    if !c.out.pending() && !wants_tls {
        return;
    }
    let Some(sock) = c.sock.as_ref() else { return };
    let r = match c.tls.as_mut() {
        Some(t) => tls::flush(&mut c.out, t, sock),
        None => c.out.flush(sock),
    };
    if let Err(e) = r {
        if c.state == State::Closing {
            finish(c, reg, ctx, None);
        } else {
            finish(c, reg, ctx, Some(format!("write: {e}")));
        }
    }
}

/// Completes delivered fan-out messages and tops the publisher's window up.
fn pump_publisher(c: &mut Conn, reg: &Registry, ctx: &mut Ctx) {
    let f = &mut ctx.fan;
    while f.completed < f.sent && f.pending[(f.completed & f.mask) as usize] == 0 {
        f.completed += 1;
    }
    if !ctx.sending || c.state != State::Open {
        return;
    }
    let now = Instant::now();
    let mut n = 0;
    while f.sent - f.completed < f.window {
        let seq = f.sent;
        let slot = (seq & f.mask) as usize;
        let body = match &ctx.bodies {
            Some(b) => &b[(seq % b.len() as u64) as usize],
            None => &ctx.pattern[16..ctx.size],
        };
        c.out.frame(OP_TEXT, &payload_header(f.pub_id, seq), body);
        f.pending[slot] = f.live;
        f.times[slot] = now;
        f.sent += 1;
        n += 1;
    }
    if n > 0 {
        c.app.send_seq = f.sent;
        flush(c, reg, ctx);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connect,
    Warmup,
    Measure,
    Drain,
    Hold,
    Closing,
}

#[derive(Default)]
struct Report {
    measured: f64,
    msgs: u64,
    bytes: u64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    hist_count: u64,
    loadgen_cpu: f64,
    server_cpu: Option<f64>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    connect_secs: f64,
    aborted: bool,
}

fn snapshot(pid: Option<u32>) -> (Instant, Duration, Option<Duration>) {
    (Instant::now(), sys::self_cpu(), pid.and_then(sys::proc_cpu))
}

fn run(cfg: &Config) -> io::Result<(Report, Ctx)> {
    let subscribers = cfg.conns;
    let total = cfg.conns + usize::from(cfg.scenario == Scenario::Fanout);
    let need = total as u64 + 64;
    let nofile = sys::raise_nofile(need);
    if nofile < need {
        return Err(io::Error::other(format!(
            "RLIMIT_NOFILE is {nofile}, {need} needed: raise the hard limit (ulimit -Hn)"
        )));
    }

    let mut pattern = vec![0u8; cfg.size.max(16)];
    let mut x: u32 = 0x1234_5678;
    for b in pattern.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = b'a' + ((x >> 24) % 26) as u8;
    }
    let window = if cfg.scenario == Scenario::Fanout {
        cfg.inflight as u64
    } else {
        1
    };
    let ring = window.next_power_of_two();
    let start = Instant::now();
    let mut ctx = Ctx {
        data_op: if cfg.binary { OP_BINARY } else { OP_TEXT },
        size: cfg.size,
        premasked: (cfg.size - 16 >= PREMASK_MIN)
            .then(|| Premasked::new(&pattern[16..cfg.size], 16, 0x2545_F491)),
        pattern,
        bodies: match cfg.payload {
            Payload::Pattern => None,
            Payload::Chat => Some(corpus::chat_lines(256)),
            Payload::Json => Some(corpus::json_docs(64)),
        },
        want_deflate: cfg.deflate,
        v1: cfg.v1,
        memo: Memo::new(),
        wire_bytes: 0,
        compressed: 0,
        wait_welcome: cfg.welcome,
        sending: false,
        measuring: false,
        msgs: 0,
        bytes: 0,
        hist: Hist::new(),
        outstanding: 0,
        errors: 0,
        pings: 0,
        welcomes: 0,
        unexpected: 0,
        server_closes: 0,
        dropped: 0,
        pending: 0,
        ready: 0,
        closed: 0,
        last_progress: start,
        fatal: None,
        fan: Fanout {
            window,
            mask: ring - 1,
            pending: vec![0; ring as usize],
            times: vec![start; ring as usize],
            sent: 0,
            completed: 0,
            live: 0,
            missed: 0,
            pub_id: subscribers as u32,
            pub_idx: subscribers,
            started: false,
        },
        rate: cfg.rate,
        pace_start: start,
        paced: 0,
        pace_next: 0,
        pace_cap: cfg.inflight as u64,
        tls_info: None,
    };
    let rbuf_size = match cfg.scenario {
        Scenario::Idle => 1024,
        Scenario::Fanout => 16 * 1024,
        // Room for many large frames: fewer partial frames to move down.
        _ => (16 * (cfg.size + 14))
            .next_power_of_two()
            .clamp(16 * 1024, 1 << 20),
    };
    let echo_ring = if cfg.scenario.is_echo() {
        cfg.inflight.next_power_of_two()
    } else {
        0
    };

    let mut rep = Report::default();
    // Declared after `conns` so it is dropped first (sockets must outlive
    // their registration).
    let mut conns: Vec<Conn> = Vec::with_capacity(total);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);

    rep.rss_before = cfg.server_pid.and_then(sys::proc_rss_kib);
    let mut phase = Phase::Connect;
    let mut deadline = start + cfg.connect_timeout;
    let mut window_start = snapshot(None);
    let mut window_end = window_start;

    loop {
        // Open connections, a bounded number of handshakes at a time.
        while phase == Phase::Connect && conns.len() < total && ctx.pending < cfg.max_pending {
            let i = conns.len();
            let role = match cfg.scenario {
                Scenario::EchoSmall | Scenario::EchoRate | Scenario::EchoLarge => Role::Echo,
                Scenario::Fanout if i == subscribers => Role::Publisher,
                Scenario::Fanout => Role::Subscriber,
                Scenario::Idle => Role::Idle,
            };
            let target = match cfg.addr2 {
                Some(addr2) if role == Role::Subscriber && i >= subscribers / 2 => addr2,
                _ => cfg.addr,
            };
            let mut sock = match TcpStream::connect(SocketAddr::V4(target)) {
                Ok(s) => s,
                Err(e) => {
                    ctx.error(|| format!("connect #{i}: {e}"));
                    ctx.fatal = Some("cannot open connections".into());
                    break;
                }
            };
            let _ = sock.set_nodelay(true);
            poll.registry().register(
                &mut sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                sock: Some(sock),
                tls: cfg.tls.as_ref().map(tls::Tls::connect),
                state: State::Connecting,
                rbuf: vec![0; rbuf_size],
                rstart: 0,
                rend: 0,
                out: Out::new((i as u32).wrapping_mul(2_654_435_761) ^ 0x9E37_79B9, 256),
                frag: Vec::new(),
                frag_op: 0,
                in_frag: false,
                frag_z: false,
                frag_wire: 0,
                deflate: false,
                app: App {
                    role,
                    id: i as u32,
                    seen_data: false,
                    send_seq: 0,
                    recv_seq: 0,
                    times: vec![start; echo_ring],
                },
            });
            ctx.pending += 1;
        }

        let now = Instant::now();
        // Pacing wakes the loop every millisecond (epoll's resolution).
        let tick = if ctx.rate > 0 && ctx.sending {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        let timeout = deadline.saturating_duration_since(now).min(tick);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for ev in events.iter() {
            let i = ev.token().0;
            let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable() || ev.is_error();
            handle_event(
                &mut conns[i],
                poll.registry(),
                &mut ctx,
                readable,
                writable,
                &cfg.request,
            );
        }
        if ctx.fan.started && phase != Phase::Closing {
            let p = ctx.fan.pub_idx;
            pump_publisher(&mut conns[p], poll.registry(), &mut ctx);
        }
        if ctx.rate > 0 && ctx.sending {
            pace(&mut conns, poll.registry(), &mut ctx);
        }

        let now = Instant::now();
        let mut abort = false;
        if let Some(why) = ctx.fatal.take() {
            eprintln!("loadgen: aborting: {why}");
            abort = true;
        }
        if matches!(phase, Phase::Warmup | Phase::Measure) && now - ctx.last_progress > STALL {
            ctx.error(|| format!("no message received for {} s: stalled", STALL.as_secs()));
            abort = true;
        }
        let mut close_now = abort;
        match phase {
            _ if abort => {}
            Phase::Connect => {
                if ctx.dropped > 0 {
                    eprintln!("loadgen: aborting: connections failed during setup");
                    close_now = true;
                } else if ctx.ready == total {
                    rep.connect_secs = (now - start).as_secs_f64();
                    if cfg.scenario == Scenario::Idle {
                        window_start = snapshot(cfg.server_pid);
                        phase = Phase::Hold;
                        deadline = now + cfg.hold;
                    } else {
                        ctx.sending = true;
                        ctx.last_progress = now;
                        if cfg.scenario == Scenario::Fanout {
                            ctx.fan.started = true;
                            ctx.fan.live = subscribers as u32;
                            let p = ctx.fan.pub_idx;
                            pump_publisher(&mut conns[p], poll.registry(), &mut ctx);
                        } else if ctx.rate > 0 {
                            ctx.pace_start = now;
                            pace(&mut conns, poll.registry(), &mut ctx);
                        } else {
                            for c in conns.iter_mut() {
                                for _ in 0..cfg.inflight {
                                    send_echo(&mut c.app, &mut c.out, &mut ctx, now);
                                }
                                flush(c, poll.registry(), &mut ctx);
                            }
                        }
                        phase = Phase::Warmup;
                        deadline = now + cfg.warmup;
                    }
                } else if now >= deadline {
                    let (ready, pending) = (ctx.ready, ctx.pending);
                    ctx.error(|| {
                        format!(
                            "timed out setting up: {ready}/{total} ready, {pending} handshakes pending"
                        )
                    });
                    close_now = true;
                }
            }
            Phase::Warmup => {
                if now >= deadline {
                    ctx.measuring = true;
                    ctx.msgs = 0;
                    ctx.bytes = 0;
                    ctx.wire_bytes = 0;
                    ctx.compressed = 0;
                    ctx.hist.clear();
                    window_start = snapshot(cfg.server_pid);
                    phase = Phase::Measure;
                    deadline = window_start.0 + cfg.duration;
                }
            }
            Phase::Measure => {
                if now >= deadline {
                    window_end = snapshot(cfg.server_pid);
                    ctx.measuring = false;
                    ctx.sending = false;
                    phase = Phase::Drain;
                    deadline = now + DRAIN_MAX;
                }
            }
            Phase::Drain => {
                let done = match cfg.scenario {
                    Scenario::Fanout => ctx.fan.completed == ctx.fan.sent,
                    _ => ctx.outstanding == 0,
                };
                if done || now >= deadline || now - ctx.last_progress > DRAIN_IDLE {
                    if cfg.scenario == Scenario::Fanout {
                        for c in conns.iter() {
                            if c.app.role == Role::Subscriber && c.state == State::Open {
                                ctx.fan.missed += ctx.fan.sent - c.app.recv_seq;
                            }
                        }
                    }
                    if !done {
                        let left = match cfg.scenario {
                            Scenario::Fanout => ctx.fan.sent - ctx.fan.completed,
                            _ => ctx.outstanding,
                        };
                        ctx.error(|| format!("{left} messages still undelivered after the drain"));
                    }
                    close_now = true;
                }
            }
            Phase::Hold => {
                if now >= deadline {
                    window_end = snapshot(cfg.server_pid);
                    rep.rss_after = cfg.server_pid.and_then(sys::proc_rss_kib);
                    close_now = true;
                }
            }
            Phase::Closing => {
                if ctx.closed == conns.len() || now >= deadline {
                    break;
                }
            }
        }
        if close_now && phase != Phase::Closing {
            let cut_short = abort || phase == Phase::Connect;
            if cut_short {
                rep.aborted = true;
                if matches!(phase, Phase::Warmup | Phase::Measure | Phase::Hold) {
                    window_end = snapshot(cfg.server_pid);
                }
            }
            ctx.sending = false;
            ctx.measuring = false;
            for c in conns.iter_mut() {
                match c.state {
                    State::Open => {
                        c.out.frame(OP_CLOSE, &1000u16.to_be_bytes(), &[]);
                        c.state = State::Closing;
                        flush(c, poll.registry(), &mut ctx);
                    }
                    State::Connecting | State::Handshake => {
                        finish(c, poll.registry(), &mut ctx, None)
                    }
                    _ => {}
                }
            }
            phase = Phase::Closing;
            deadline = Instant::now() + CLOSE_WAIT;
        }
    }

    let secs = (window_end.0 - window_start.0).as_secs_f64();
    rep.measured = secs;
    rep.msgs = ctx.msgs;
    rep.bytes = ctx.bytes;
    rep.hist_count = ctx.hist.count();
    rep.p50_us = ctx.hist.quantile(0.50) as f64 / 1e3;
    rep.p99_us = ctx.hist.quantile(0.99) as f64 / 1e3;
    rep.p999_us = ctx.hist.quantile(0.999) as f64 / 1e3;
    rep.max_us = ctx.hist.max() as f64 / 1e3;
    if secs > 0.0 {
        rep.loadgen_cpu = (window_end.1.saturating_sub(window_start.1)).as_secs_f64() / secs;
        if let (Some(a), Some(b)) = (window_start.2, window_end.2) {
            rep.server_cpu = Some(b.saturating_sub(a).as_secs_f64() / secs);
        }
    }
    Ok((rep, ctx))
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("churn") {
        let cfg = match parse_churn_args(std::env::args().skip(2)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("loadgen: {e}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        return match churn::run(&cfg) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("loadgen: {e}");
                println!("RESULT scenario=churn ok=0 error=io");
                ExitCode::from(1)
            }
        };
    }
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (rep, ctx) = match run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            println!("RESULT scenario={} ok=0 error=io", cfg.scenario.name());
            return ExitCode::from(1);
        }
    };
    print_report(&cfg, &rep, &ctx);
    if ctx.errors > 0 || ctx.fan.missed > 0 || rep.aborted {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_report(cfg: &Config, rep: &Report, ctx: &Ctx) {
    let name = cfg.scenario.name();
    let kind = if cfg.binary { "binary" } else { "text" };
    let secs = rep.measured.max(1e-9);
    let mut kv: Vec<(&str, String)> = vec![("scenario", name.to_string())];
    println!("scenario {name} against {}", cfg.url);
    if cfg.tls.is_some() {
        let info = ctx.tls_info.as_deref().unwrap_or("no session completed");
        println!("  TLS            {info} (server certificate not checked)");
        kv.push(("tls", info.replace(' ', "_")));
    }
    match cfg.scenario {
        Scenario::EchoRate => println!(
            "  {} connections (at most {} outstanding each) x {} B {kind}, {} messages/s offered; {:.2} s measured after {:.2} s warm-up",
            cfg.conns,
            cfg.inflight,
            cfg.size,
            cfg.rate,
            rep.measured,
            cfg.warmup.as_secs_f64()
        ),
        Scenario::EchoSmall | Scenario::EchoLarge => println!(
            "  {} connections x {} in flight x {} B {kind}; {:.2} s measured after {:.2} s warm-up",
            cfg.conns,
            cfg.inflight,
            cfg.size,
            rep.measured,
            cfg.warmup.as_secs_f64()
        ),
        Scenario::Fanout => {
            let what = match cfg.payload {
                Payload::Pattern => format!("{} B text", cfg.size),
                Payload::Chat => format!(
                    "chat lines of {}-{} B",
                    corpus::CHAT_MIN,
                    corpus::CHAT_MAX
                ),
                Payload::Json => "JSON documents of 3.9-4 KiB".to_string(),
            };
            println!(
                "  {} subscribers + 1 publisher (window {} messages) x {what}; {:.2} s measured after {:.2} s warm-up",
                cfg.conns,
                cfg.inflight,
                rep.measured,
                cfg.warmup.as_secs_f64()
            );
            if cfg.payload != Payload::Pattern {
                kv.push((
                    "payload",
                    format!("{:?}", cfg.payload).to_ascii_lowercase(),
                ));
            }
        }
        Scenario::Idle => println!(
            "  {} idle connections held {:.2} s",
            cfg.conns, rep.measured
        ),
    }
    let rate = rep.msgs as f64 / secs;
    let mbs = rep.bytes as f64 / secs / 1e6;
    if cfg.scenario != Scenario::Idle {
        let what = if cfg.scenario == Scenario::Fanout {
            "deliveries/s"
        } else {
            "messages/s"
        };
        println!("  {what:<14} {rate:.0}");
        println!("  MB/s           {mbs:.2} (payload received)");
        println!(
            "  latency        p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us ({} samples)",
            rep.p50_us, rep.p99_us, rep.p999_us, rep.max_us, rep.hist_count
        );
        kv.push(("msgs", rep.msgs.to_string()));
        kv.push(("msgs_per_s", format!("{rate:.0}")));
        kv.push(("mb_per_s", format!("{mbs:.3}")));
        kv.push(("p50_us", format!("{:.1}", rep.p50_us)));
        kv.push(("p99_us", format!("{:.1}", rep.p99_us)));
        kv.push(("p999_us", format!("{:.1}", rep.p999_us)));
        if cfg.rate > 0 {
            kv.push(("offered_per_s", cfg.rate.to_string()));
        }
        kv.push(("max_us", format!("{:.1}", rep.max_us)));
        let n = rep.msgs.max(1) as f64;
        let (wire, payload) = (ctx.wire_bytes as f64 / n, rep.bytes as f64 / n);
        let zpct = ctx.compressed as f64 * 100.0 / n;
        println!(
            "  per message    {payload:.1} B payload, {wire:.1} B on the wire (frames as received), {zpct:.1} % compressed{}",
            if cfg.deflate { " (permessage-deflate)" } else { "" }
        );
        kv.push(("deflate", u8::from(cfg.deflate).to_string()));
        kv.push(("payload_bytes_per_msg", format!("{payload:.1}")));
        kv.push(("wire_bytes_per_msg", format!("{wire:.1}")));
        kv.push(("compressed_pct", format!("{zpct:.1}")));
        if cfg.deflate {
            let m = &ctx.memo;
            println!(
                "  inflated       {} distinct compressed messages, {} copies found inflated (whole run)",
                m.inflations, m.hits
            );
            kv.push(("inflations", m.inflations.to_string()));
            kv.push(("inflate_memo_hits", m.hits.to_string()));
        }
    }
    if cfg.scenario == Scenario::Fanout {
        let f = &ctx.fan;
        println!(
            "  published      {} messages, missed deliveries {}, subscribers left {}",
            f.sent, f.missed, f.live
        );
        kv.push(("published", f.sent.to_string()));
        kv.push(("missed", f.missed.to_string()));
    }
    if cfg.scenario == Scenario::Idle {
        let per_s = cfg.conns as f64 / rep.connect_secs.max(1e-9);
        println!(
            "  set up         {} connections in {:.2} s ({per_s:.0}/s, handshake + welcome)",
            cfg.conns, rep.connect_secs
        );
        kv.push(("connect_per_s", format!("{per_s:.0}")));
        match (rep.rss_before, rep.rss_after) {
            (Some(a), Some(b)) => {
                let per = (b as f64 - a as f64) * 1024.0 / cfg.conns as f64;
                println!(
                    "  server RSS     {a} KiB before, {b} KiB after: {per:.0} bytes per connection"
                );
                kv.push(("rss_before_kib", a.to_string()));
                kv.push(("rss_after_kib", b.to_string()));
                kv.push(("rss_per_conn_bytes", format!("{per:.0}")));
            }
            _ => println!("  server RSS     unknown (give --server-pid)"),
        }
    }
    println!(
        "  loadgen CPU    {:.1} % of one core",
        rep.loadgen_cpu * 100.0
    );
    kv.push(("loadgen_cpu_pct", format!("{:.1}", rep.loadgen_cpu * 100.0)));
    kv.push((
        "loadgen_cpu_s",
        format!("{:.3}", rep.loadgen_cpu * rep.measured),
    ));
    if let Some(s) = rep.server_cpu {
        let per = if rep.msgs > 0 {
            format!(
                " ({:.2} us CPU per message)",
                s * secs * 1e6 / rep.msgs as f64
            )
        } else {
            String::new()
        };
        println!("  server CPU     {:.1} % of one core{per}", s * 100.0);
        kv.push(("server_cpu_pct", format!("{:.1}", s * 100.0)));
        kv.push(("server_cpu_s", format!("{:.3}", s * rep.measured)));
        if rep.msgs > 0 {
            kv.push((
                "server_cpu_us_per_msg",
                format!("{:.3}", s * secs * 1e6 / rep.msgs as f64),
            ));
        }
    }
    println!(
        "  errors {}, dropped connections {}, server closes {}, pings answered {}, welcomes {}, unexpected messages {}",
        ctx.errors, ctx.dropped, ctx.server_closes, ctx.pings, ctx.welcomes, ctx.unexpected
    );
    let ok = ctx.errors == 0 && ctx.fan.missed == 0 && !rep.aborted;
    kv.push(("errors", ctx.errors.to_string()));
    kv.push(("dropped", ctx.dropped.to_string()));
    kv.push(("pings", ctx.pings.to_string()));
    kv.push(("ok", u8::from(ok).to_string()));
    let line: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT {}", line.join(" "));
}
