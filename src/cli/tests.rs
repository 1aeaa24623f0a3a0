//! The command line's tests: every flag parsed, every mistake worded, the
//! value readers' edges, and `--help` against the table.

use std::ffi::OsString;
use std::time::Duration;

use rookery::proto::rate::Rate;
use rookery::Config;

use super::flags::FLAGS;
use super::parse::VALUE_FLAGS;

use super::*;

fn run(args: &[&str]) -> Result<Options, CliError> {
    match parse(args.iter().map(OsString::from))? {
        Command::Run(opts) => Ok(*opts),
        other => panic!("not a run: {other:?}"),
    }
}

#[test]
fn defaults_match_the_specification() {
    let opts = run(&[]).unwrap();
    assert_eq!(opts.listen, "127.0.0.1:1984");
    assert_eq!(opts.mode, Mode::Chat);
    assert_eq!(opts.welcome, "Welcome to Rookery Chat!");
    assert!(opts.page && !opts.allow_binary);
    assert_eq!(opts.config, Config::default());
    assert_eq!(opts.config.path, "/chat");
    assert_eq!(opts.config.ping_interval, Duration::from_secs(5));
    assert_eq!(opts.config.idle_timeout, Duration::from_secs(15));
    assert_eq!(opts.config.max_message, 1 << 20);
    assert_eq!(opts.config.max_connections, 1024);
    assert_eq!(opts.config.max_connections_per_ip, 0, "off");
    assert_eq!(opts.config.rate_limit, None, "off");
    assert_eq!(opts.config.rate_limit_bytes, None, "off");
    assert_eq!(
        (opts.history, opts.max_rooms, opts.metrics),
        (0, 1024, false)
    );
    assert_eq!(opts.room_ttl, Duration::from_secs(3600));
}

#[test]
fn redis_flags() {
    let refused = |args: &[&str]| match run(args) {
        Err(CliError::Refused { flag, why, .. }) => (flag, why),
        other => panic!("not refused: {other:?}"),
    };
    #[cfg(not(feature = "redis"))]
    assert_eq!(
        refused(&["--redis", "redis://127.0.0.1"]),
        (
            "--redis",
            "this build has no Redis: build with --features redis".to_string()
        )
    );
    #[cfg(feature = "redis")]
    {
        let opts = run(&[
            "--redis",
            "redis://:pw@127.0.0.1:7/1",
            "--redis-prefix",
            "p",
        ])
        .unwrap();
        assert_eq!(opts.redis.as_deref(), Some("redis://:pw@127.0.0.1:7/1"));
        assert_eq!(opts.redis_prefix, "p");
        assert_eq!(refused(&["--redis", "http://x"]).0, "--redis");
        assert_eq!(refused(&["--redis", "redis://127.0.0.1:x"]).0, "--redis");
    }
    assert_eq!(run(&[]).unwrap().redis_prefix, "rookery");
}

#[test]
fn every_flag_is_applied() {
    let opts = run(&[
        "--listen",
        "0.0.0.0:0",
        "--path=/ws",
        "--mode",
        "echo",
        "--welcome",
        "hi",
        "--ping-interval",
        "250ms",
        "--idle-timeout",
        "2m",
        "--handshake-timeout",
        "1s",
        "--close-timeout",
        "0",
        "--max-message",
        "64KiB",
        "--max-backlog",
        "2MiB",
        "--max-connections",
        "10",
        "--allow-origin",
        "https://a",
        "--allow-origin=https://b",
        "--allow-binary",
        "--no-page",
        "--history",
        "5",
        "--max-rooms=2",
        "--room-ttl",
        "90s",
        "--metrics",
        "-v",
    ])
    .unwrap();
    assert_eq!(opts.listen, "0.0.0.0:0");
    assert_eq!(opts.config.path, "/ws");
    assert_eq!(opts.mode, Mode::Echo);
    assert_eq!(opts.welcome, "hi");
    assert_eq!(opts.config.ping_interval, Duration::from_millis(250));
    assert_eq!(opts.config.idle_timeout, Duration::from_secs(120));
    assert_eq!(opts.config.handshake_timeout, Duration::from_secs(1));
    assert_eq!(opts.config.close_timeout, Duration::ZERO);
    assert_eq!(opts.config.max_message, 65536);
    assert_eq!(opts.config.max_backlog, 2 << 20);
    assert_eq!(opts.config.max_connections, 10);
    assert_eq!(opts.config.allowed_origins, ["https://a", "https://b"]);
    assert!(opts.allow_binary && !opts.page);
    assert_eq!((opts.history, opts.max_rooms, opts.metrics), (5, 2, true));
    assert_eq!(opts.room_ttl, Duration::from_secs(90));
    assert_eq!(run(&["--room-ttl", "0"]).unwrap().room_ttl, Duration::ZERO);
    assert_eq!(opts.verbosity, Verbosity::Verbose);
    assert_eq!(run(&["-v", "-v"]).unwrap().verbosity, Verbosity::Trace);
    assert_eq!(run(&["-q"]).unwrap().verbosity, Verbosity::Quiet);
}

#[test]
fn rate_limits_and_the_per_address_cap() {
    let config = |args: &[&str]| run(args).unwrap().config;
    let rate = |n, burst| Rate::new(n, burst);
    for (given, want) in [
        ("100", rate(100, 100)),
        ("100/s", rate(100, 100)),
        ("100:500", rate(100, 500)),
        ("100/s:500", rate(100, 500)),
        ("1/s:1", rate(1, 1)),
        ("0", None),
    ] {
        assert_eq!(config(&["--rate-limit", given]).rate_limit, want, "{given}");
    }
    for (given, want) in [
        ("64KiB", rate(65536, 65536)),
        ("1MiB/s", rate(1 << 20, 1 << 20)),
        ("1MiB/s:4MiB", rate(1 << 20, 4 << 20)),
        ("1000:2000", rate(1000, 2000)),
        ("0", None),
    ] {
        assert_eq!(
            config(&["--rate-limit-bytes", given]).rate_limit_bytes,
            want,
            "{given}"
        );
    }
    assert_eq!(
        config(&["--max-connections-per-ip=8"]).max_connections_per_ip,
        8
    );
    assert_eq!(
        config(&["--max-connections-per-ip", "0"]).max_connections_per_ip,
        0
    );
    for (args, want) in [
        (
            &["--rate-limit", "x"][..],
            "invalid value 'x' for --rate-limit: expected messages a second",
        ),
        (
            &["--rate-limit", "10/m"],
            "invalid value '10/m' for --rate-limit",
        ),
        (
            &["--rate-limit", "10:0"],
            "invalid value '10:0' for --rate-limit",
        ),
        (
            &["--rate-limit", "0:10"],
            "invalid value '0:10' for --rate-limit",
        ),
        (
            &["--rate-limit", "+5"],
            "invalid value '+5' for --rate-limit",
        ),
        (
            &["--rate-limit", "10:"],
            "invalid value '10:' for --rate-limit",
        ),
        (
            &["--rate-limit", "/s"],
            "invalid value '/s' for --rate-limit",
        ),
        (
            &["--rate-limit", "2000000000000"],
            "invalid value '2000000000000' for --rate-limit",
        ),
        (&["--rate-limit"], "flag --rate-limit needs a value"),
        (
            &["--rate-limit-bytes", "1TB"],
            "invalid value '1TB' for --rate-limit-bytes: expected bytes a second",
        ),
        (
            &["--rate-limit-bytes", "1MiB:x"],
            "invalid value '1MiB:x' for --rate-limit-bytes",
        ),
        (
            &["--rate-limit-bytes", "2GiB/s:2TB"],
            "invalid value '2GiB/s:2TB' for --rate-limit-bytes",
        ),
        (
            &["--max-connections-per-ip", "-1"],
            "invalid value '-1' for --max-connections-per-ip",
        ),
        (
            &["--max-connections-per-ip", "many"],
            "invalid value 'many' for --max-connections-per-ip",
        ),
    ] {
        let err = run(args).unwrap_err().to_string();
        assert!(err.starts_with(want), "{args:?}: {err}");
    }
}

#[test]
fn deflate_needs_the_feature() {
    let built_in = cfg!(feature = "deflate");
    match run(&["--deflate"]) {
        Ok(opts) => {
            assert!(built_in);
            assert!(opts.config.deflate);
        }
        Err(e) => {
            assert!(!built_in);
            assert_eq!(
                e.to_string(),
                "flag --deflate needs a build with the deflate feature (cargo build --release --features deflate)"
            );
        }
    }
    assert!(!run(&[]).unwrap().config.deflate, "off by default");
    assert!(matches!(
        run(&["--deflate=1"]),
        Err(CliError::UnexpectedValue("--deflate"))
    ));
}

#[test]
fn short_flags_combine_and_v_and_q_count_against_each_other() {
    let cases: &[(&[&str], Verbosity)] = &[
        (&[], Verbosity::Normal),
        (&["-v"], Verbosity::Verbose),
        (&["--verbose"], Verbosity::Verbose),
        (&["-vv"], Verbosity::Trace),
        (&["-vvv"], Verbosity::Trace),
        (&["-vvvvvvvv"], Verbosity::Trace),
        (&["-v", "--verbose"], Verbosity::Trace),
        (&["-q"], Verbosity::Quiet),
        (&["--quiet"], Verbosity::Quiet),
        (&["-qq"], Verbosity::Errors),
        (&["-qqq"], Verbosity::Errors),
        (&["-vq"], Verbosity::Normal),
        (&["-qv"], Verbosity::Normal),
        (&["-v", "-q"], Verbosity::Normal),
        (&["-q", "-v"], Verbosity::Normal),
        (&["-vvq"], Verbosity::Verbose),
        (&["-vvv", "-q"], Verbosity::Trace),
        (&["-vqq"], Verbosity::Quiet),
        (&["-vvvvvvvv", "-q"], Verbosity::Trace),
        (&["-vvvvvvvv", "-qqqqqqq"], Verbosity::Verbose),
    ];
    for (args, want) in cases {
        assert_eq!(run(args).unwrap().verbosity, *want, "{args:?}");
    }
    assert_eq!(parse([OsString::from("-vh")]), Ok(Command::Help));
    assert_eq!(parse([OsString::from("-qV")]), Ok(Command::Version));
    assert_eq!(
        run(&["-vx"]).unwrap_err().to_string(),
        "unknown flag '-x' in '-vx' (see --help)"
    );
    assert_eq!(
        run(&["-x"]).unwrap_err().to_string(),
        "unknown flag '-x' (see --help)"
    );
    assert_eq!(
        run(&["-v=1"]).unwrap_err().to_string(),
        "unknown flag '-=' in '-v=1' (see --help)"
    );
    assert_eq!(
        run(&["-"]).unwrap_err().to_string(),
        "unexpected argument '-' (see --help)"
    );
}

#[test]
fn mistakes_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "unknown flag '--bogus'"),
        (&["--listen"], "flag --listen needs a value"),
        (
            &["--ping-interval", "5"],
            "invalid value '5' for --ping-interval",
        ),
        (
            &["--idle-timeout", "soon"],
            "invalid value 'soon' for --idle-timeout",
        ),
        (
            &["--max-message", "1TB"],
            "invalid value '1TB' for --max-message",
        ),
        (
            &["--max-backlog", "0"],
            "invalid value '0' for --max-backlog",
        ),
        (
            &["--max-connections", "-1"],
            "invalid value '-1' for --max-connections",
        ),
        (&["--max-rooms", "0"], "invalid value '0' for --max-rooms"),
        (&["--history", "x"], "invalid value 'x' for --history"),
        (
            &["--history", "100001"],
            "invalid value '100001' for --history",
        ),
        (&["--metrics=1"], "flag --metrics takes no value"),
        (&["--history"], "flag --history needs a value"),
        (&["--mode", "relay"], "invalid value 'relay' for --mode"),
        (&["--path", "chat"], "invalid value 'chat' for --path"),
        (&["--path", "/a\"b"], "invalid value '/a\"b' for --path"),
        (
            &["--path", "/x?y"],
            "invalid value '/x?y' for --path: a path cannot hold '?'",
        ),
        (
            &["--path", "/x#y"],
            "invalid value '/x#y' for --path: a path cannot hold '#'",
        ),
        (
            &["--path", "/my chat"],
            "invalid value '/my chat' for --path: a path cannot hold spaces",
        ),
        (
            &["--path", "/a\nb"],
            "invalid value '/a\\nb' for --path: a path cannot hold '\\n' (letters",
        ),
        (
            &["--path", "/a<b"],
            "invalid value '/a<b' for --path: a path cannot hold '<' (letters, digits",
        ),
        (
            &["--path", "/"],
            "invalid value '/' for --path: the chat page is served at /",
        ),
        (
            &["--path", "/", "--mode", "chat"],
            "invalid value '/' for --path: the chat page is served at /",
        ),
        (
            &["--path", "/chat/"],
            "invalid value '/chat/' for --path: a path cannot end with '/' (rooms are PATH/NAME): write '/chat'",
        ),
        (
            &["--path", "/a/b//", "--mode", "echo"],
            "invalid value '/a/b//' for --path: a path cannot end with '/' (rooms are PATH/NAME): write '/a/b'",
        ),
        (
            &["--listen", "nowhere"],
            "invalid value 'nowhere' for --listen",
        ),
        (&["stray"], "unexpected argument 'stray'"),
        (&["--no-page=1"], "flag --no-page takes no value"),
    ];
    for (args, want) in cases {
        let err = run(args).unwrap_err().to_string();
        assert!(err.starts_with(want), "{args:?}: {err}");
        assert!(!err.contains('\n'));
    }
}

#[test]
fn allow_origin_takes_what_parse_origin_makes() {
    let err = run(&["--allow-origin", "http://a.example/"])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid value 'http://a.example/' for --allow-origin: "),
        "{err}"
    );
    assert_eq!(
        run(&[
            "--allow-origin",
            "HTTPS://A.example:443",
            "--allow-origin=*"
        ])
        .unwrap()
        .config
        .allowed_origins,
        ["https://a.example", "*"]
    );
}

#[test]
fn the_root_path_is_fine_where_no_page_is_served() {
    assert_eq!(run(&["--path", "/", "--no-page"]).unwrap().config.path, "/");
    assert_eq!(
        run(&["--path", "/", "--mode", "echo"]).unwrap().config.path,
        "/"
    );
    assert_eq!(
        run(&["--path", "/a/b-c_d.e~f%20"]).unwrap().config.path,
        "/a/b-c_d.e~f%20"
    );
}

#[test]
fn help_and_version() {
    assert_eq!(parse([OsString::from("--help")]), Ok(Command::Help));
    assert_eq!(parse([OsString::from("-V")]), Ok(Command::Version));
    for flag in VALUE_FLAGS
        .iter()
        .chain(&["--allow-binary", "--no-page", "--quiet", "--verbose"])
    {
        assert!(help().contains(flag), "help does not explain {flag}");
    }
}

#[test]
fn the_help_table_names_exactly_the_flags_that_take_a_value() {
    let with_arg: Vec<&str> = FLAGS
        .iter()
        .filter(|f| !f.arg.is_empty())
        .map(|f| f.names)
        .collect();
    assert_eq!(with_arg, VALUE_FLAGS, "FLAGS and VALUE_FLAGS disagree");
}
