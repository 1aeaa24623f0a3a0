//! The handlers that wrap another one (the CLI's `Service`, the service
//! watchdog) forward every callback of [`rookery::Handler`]: a callback the
//! trait gains and a wrapper forgets would silently run the trait's default
//! instead of the wrapped handler's (the chat would miss what the cluster
//! delivers). Read from the source: every `fn on_*` of the trait must be
//! defined by each wrapper.

use std::collections::BTreeSet;
use std::path::Path;

/// The names of the `fn on_*` items in `text` outside `//` comments.
fn callbacks(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .filter_map(|line| line.trim_start().strip_prefix("fn on_"))
        .map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            format!("on_{name}")
        })
        .collect()
}

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn wrappers_forward_every_callback() {
    let handler = read("src/server/handler.rs");
    let start = handler
        .find("pub trait Handler")
        .expect("src/server/handler.rs declares pub trait Handler");
    // The trait's body: up to the first line that closes it at column 0.
    let body = &handler[start..];
    let end = body.find("\n}\n").expect("the trait's body ends");
    let wanted = callbacks(&body[..end]);
    assert!(wanted.len() >= 8, "too few callbacks found: {wanted:?}");
    for wrapper in ["src/served.rs", "src/service/watchdog.rs"] {
        let defined = callbacks(&read(wrapper));
        let missing: Vec<_> = wanted.difference(&defined).collect();
        assert!(missing.is_empty(), "{wrapper} does not forward {missing:?}");
    }
}
