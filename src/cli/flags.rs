//! The table of flags ([`FLAGS`]) and the text after it ([`NOTES`]), from
//! which both `--help` ([`help`]) and the man page (`man.rs`) are made.

/// One flag of the command line, as `--help` and the man page
/// (`docs/rookery.1`, see `man.rs`) both show it: adding a flag is one
/// entry here (and its parsing below).
pub(crate) struct Flag {
    /// The flag's names: `--listen`, or `-v, --verbose`.
    pub(crate) names: &'static str,
    /// Its value's placeholder (`ADDR:PORT`), or `""` for a switch.
    pub(crate) arg: &'static str,
    /// Its default, or `""` when there is none to show.
    pub(crate) default: &'static str,
    /// What it does, one line per line of `--help` (the man page fills
    /// them into one paragraph).
    pub(crate) help: &'static [&'static str],
}

/// Every flag, in the order `--help` lists them.
pub(crate) const FLAGS: &[Flag] = &[
    Flag {
        names: "--listen",
        arg: "ADDR:PORT",
        default: "127.0.0.1:1984",
        help: &["address to listen on (port 0 picks one)"],
    },
    Flag {
        names: "--path",
        arg: "PATH",
        default: "/chat",
        help: &[
            "WebSocket path",
            "(/ only with --no-page or --mode echo; no",
            "trailing / otherwise: rooms are PATH/NAME)",
        ],
    },
    Flag {
        names: "--mode",
        arg: "chat|echo",
        default: "chat",
        help: &["chat: relay every text to everyone; echo: back to sender"],
    },
    Flag {
        names: "--welcome",
        arg: "TEXT",
        default: "Welcome to Rookery Chat!",
        help: &["text sent to each new chat connection"],
    },
    Flag {
        names: "--ping-interval",
        arg: "DUR",
        default: "5s",
        help: &["ping every open connection this often", "(0: no pings)"],
    },
    Flag {
        names: "--idle-timeout",
        arg: "DUR",
        default: "15s",
        help: &[
            "close (1001) connections silent this long",
            "(0: silence never closes a connection)",
        ],
    },
    Flag {
        names: "--handshake-timeout",
        arg: "DUR",
        default: "5s",
        help: &[
            "drop connections that have not upgraded",
            "by then (0: no limit; not for the open internet)",
        ],
    },
    Flag {
        names: "--close-timeout",
        arg: "DUR",
        default: "5s",
        help: &[
            "how long a peer may take to answer our",
            "close frame, and the most a shutdown waits (0: a",
            "shutdown sends its close frames and exits without",
            "waiting; any other close still waits 1s)",
        ],
    },
    Flag {
        names: "--max-message",
        arg: "SIZE",
        default: "1MiB",
        help: &["largest message accepted, else close 1009"],
    },
    Flag {
        names: "--max-backlog",
        arg: "SIZE",
        default: "1MiB",
        help: &["most bytes queued per client, else close 1008"],
    },
    Flag {
        names: "--max-connections",
        arg: "N",
        default: "1024",
        help: &["more connections get 503"],
    },
    Flag {
        names: "--max-connections-per-ip",
        arg: "N",
        default: "0",
        help: &[
            "more connections from one IP address get 503,",
            "handshakes included (0: no limit)",
        ],
    },
    Flag {
        names: "--rate-limit",
        arg: "N[/s][:BURST]",
        default: "0",
        help: &[
            "close (1008) a connection that sends more than N",
            "messages a second, bursts up to BURST (default N)",
            "(0: no limit)",
        ],
    },
    Flag {
        names: "--rate-limit-bytes",
        arg: "SIZE[/s][:BURST]",
        default: "0",
        help: &[
            "the same over message bytes, compressed",
            "ones counted inflated; BURST (a SIZE, default SIZE)",
            "is also the largest message that passes",
        ],
    },
    Flag {
        names: "--allow-origin",
        arg: "ORIGIN",
        default: "any",
        help: &[
            "accept browsers only from ORIGIN (repeatable; else 403)",
            "ORIGIN: scheme://host[:port], scheme http or https, no path",
            "(e.g. https://a.example); * allows any",
        ],
    },
    Flag {
        names: "--allow-binary",
        arg: "",
        default: "",
        help: &["relay binary messages instead of closing with 1003"],
    },
    Flag {
        names: "--no-page",
        arg: "",
        default: "",
        help: &["do not serve the chat page at GET /"],
    },
    Flag {
        names: "--history",
        arg: "N",
        default: "0",
        help: &[
            "messages each chat room keeps for newcomers",
            "(0: none; at most 100000; memory: at most",
            "N x --max-message per room; with --redis, each",
            "room's Redis stream is trimmed to N too)",
        ],
    },
    Flag {
        names: "--max-rooms",
        arg: "N",
        default: "1024",
        help: &[
            "an upgrade that would create one more room gets 503",
            "(PATH joins the default room, never refused; PATH/NAME",
            "room NAME; a room without members makes way first)",
        ],
    },
    Flag {
        names: "--room-ttl",
        arg: "DUR",
        default: "1h",
        help: &[
            "forget a room with history but no members after DUR",
            "(0: only when a new room needs its place)",
        ],
    },
    Flag {
        names: "--metrics",
        arg: "",
        default: "",
        help: &["serve Prometheus metrics at GET /metrics"],
    },
    Flag {
        names: "--deflate",
        arg: "",
        default: "",
        help: &[
            "take browsers' permessage-deflate offers: messages",
            "compressed one by one, one compressor for all",
            "(builds with the deflate feature)",
        ],
    },
    Flag {
        names: "--tls-cert",
        arg: "FILE",
        default: "",
        help: &[
            "TLS certificate (chain), PEM: https and wss on the",
            "listening port (with --tls-key; builds with the",
            "tls feature; SIGHUP re-reads both files)",
        ],
    },
    Flag {
        names: "--tls-key",
        arg: "FILE",
        default: "",
        help: &["its private key, PEM (PKCS#8, PKCS#1 or SEC1)"],
    },
    Flag {
        names: "--redis",
        arg: "URL",
        default: "",
        help: &[
            "share rooms with the other nodes on this Redis",
            "(redis://[[USER]:PASSWORD@]HOST[:PORT][/DB];",
            "builds with the redis feature; see docs/cluster.md)",
        ],
    },
    Flag {
        names: "--redis-prefix",
        arg: "PREFIX",
        default: "rookery",
        help: &["Redis channels are PREFIX:room:R"],
    },
    Flag {
        names: "--io",
        arg: "auto|epoll|uring",
        default: "auto",
        help: &[
            "how bytes move: epoll, or io_uring (feature",
            "uring, Linux 6.0+); auto: uring where it runs",
        ],
    },
    Flag {
        names: "-v, --verbose",
        arg: "",
        default: "",
        help: &["more logging: -v debug, -vv (or more) trace"],
    },
    Flag {
        names: "-q, --quiet",
        arg: "",
        default: "",
        help: &[
            "less logging: -q warnings and errors, -qq errors only",
            "(each -v and -q counts against the other: -vq is the default)",
        ],
    },
    Flag {
        names: "-h, --help",
        arg: "",
        default: "",
        help: &["print this help"],
    },
    Flag {
        names: "-V, --version",
        arg: "",
        default: "",
        help: &["print the version"],
    },
];

/// What `--help` says after the flags, and the man page in its DETAILS
/// section: paragraphs separated by blank lines.
pub(crate) const NOTES: &str = "\
DUR is a number with a unit: 250ms, 5s, 2m, 1h, or 0 (what 0 means is
given for each flag above).
SIZE is bytes (65536), or a number with KiB, MiB, GiB (powers of 1024; also
K, M, G) or KB, MB, GB (powers of 1000): 64KiB, 1MiB, 10MB.

Logs go to stderr, each line stamped with the UTC time (not when stderr is
the systemd journal, which stamps lines itself).
RUST_LOG, when set, overrides -v and -q (e.g. RUST_LOG=debug).

SIGINT or SIGTERM stops accepting, closes every connection with 1001, waits
at most --close-timeout for their answers and exits 0; a second SIGINT or
SIGTERM meanwhile ends the process at once, killed by that signal.
SIGHUP re-reads the TLS certificate and key; without TLS it is logged and
ignored (it never stops the server).

Under systemd: a listening socket passed by socket activation (LISTEN_PID,
LISTEN_FDS; the one named rookery, else the first) is served instead of
--listen; with NOTIFY_SOCKET the server reports READY=1 once serving,
RELOADING=1 and READY=1 around SIGHUP, STOPPING=1 at SIGTERM, and WATCHDOG=1
every half of WATCHDOG_USEC from its loop.
";

/// The one-line summary, first in `--help` and the man page's NAME.
pub(crate) const SUMMARY: &str = "a single-threaded WebSocket chat server (RFC 6455)";

/// The `--help` text: the summary, [`FLAGS`] in two columns, [`NOTES`].
pub(crate) fn help() -> String {
    use std::fmt::Write as _;

    let mut out = format!("rookery — {SUMMARY}\n\nUSAGE:\n    rookery [OPTIONS]\n\nOPTIONS:\n");
    for flag in FLAGS {
        let left = match flag.arg {
            "" => flag.names.to_string(),
            arg => format!("{} {arg}", flag.names),
        };
        let mut lines = flag.help.iter();
        let first = lines.next().copied().unwrap_or_default();
        if left.chars().count() > 25 {
            // A long flag takes a line of its own; its help starts below.
            let _ = writeln!(out, "    {left}");
            let _ = write!(out, "{:30}{first}", "");
            if !flag.default.is_empty() {
                let _ = write!(out, "  [default: {}]", flag.default);
            }
        } else if flag.default.is_empty() {
            let _ = write!(out, "    {left:<25} {first}");
        } else {
            // Defaults line up where the first line is short enough.
            let gap = if first.chars().count() < 41 {
                " "
            } else {
                "  "
            };
            let _ = write!(
                out,
                "    {left:<25} {first:<41}{gap}[default: {}]",
                flag.default
            );
        }
        out.push('\n');
        for line in lines {
            let _ = writeln!(out, "{:30}{line}", "");
        }
    }
    out.push('\n');
    out.push_str(NOTES);
    out
}
