//! The man page `rookery(1)`, rendered in roff from the same table as
//! `--help` ([`flags::FLAGS`], [`flags::NOTES`]), so the two cannot drift. Built
//! for tests only, so the program carries no roff: `docs/rookery.1` is the
//! checked-in rendering, which a test compares with this one (and rewrites
//! with `ROOKERY_WRITE_MAN=1 cargo test --bin rookery man`).

use std::fmt::Write as _;

use super::flags::{self, Flag};

/// The sections after DETAILS that `--help` has no room for: roff source.
const TAIL: &str = r#".SH FILES
.TP
.I /etc/default/rookery
The service's flags, as
.B ROOKERY_ARGS="..."
(read by rookery.service).
.TP
.I /lib/systemd/system/rookery.socket
The listening socket (port 1984 on every address); change it with
.BR "systemctl edit rookery.socket" .
.TP
.I /lib/systemd/system/rookery.service
The sandboxed service that serves it.
.SH EXIT STATUS
0 after a graceful stop, 1 when the server cannot start or fails, 2 for a
bad flag or value. A second SIGINT or SIGTERM while stopping kills the
process by that signal (a shell shows 130 or 143).
.SH EXAMPLES
.TP
.B rookery \-\-listen 0.0.0.0:8080 \-\-history 50
A chat on every interface, each room keeping its last 50 messages.
.TP
.B systemctl enable --now rookery.socket
Serve on port 1984 from boot on, under systemd, as an unprivileged user.
.SH SEE ALSO
.BR systemd.socket (5),
.BR systemd.service (5),
.BR sd_notify (3);
/usr/share/doc/rookery for the documentation (embedded.md, chat.md,
tls.md, security.md).
"#;

/// The whole page.
pub(crate) fn render() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        ".\\\" Generated from src/cli/flags.rs by src/cli/man.rs; do not edit by hand.\n\
         .TH ROOKERY 1 \"\" \"rookery {}\" \"User Commands\"",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, ".SH NAME\nrookery \\- {}", escape(flags::SUMMARY));
    out.push_str(".SH SYNOPSIS\n.B rookery\n");
    for flag in flags::FLAGS {
        let name = flag.names.rsplit(", ").next().unwrap_or(flag.names);
        match flag.arg {
            "" => {
                let _ = writeln!(out, "[\\fB{}\\fR]", escape(name));
            }
            arg => {
                let _ = writeln!(out, "[\\fB{}\\fR \\fI{}\\fR]", escape(name), escape(arg));
            }
        }
    }
    out.push_str(
        ".SH DESCRIPTION\n\
         A WebSocket (RFC 6455) server in one thread, for small Linux boards:\n\
         by default a chat, where every text a client sends goes to every client\n\
         of its room; with\n.B \\-\\-mode echo\nevery message goes back to its sender.\n\
         .SH OPTIONS\n",
    );
    for flag in flags::FLAGS {
        render_flag(&mut out, flag);
    }
    out.push_str(".SH DETAILS\n");
    for (i, paragraph) in flags::NOTES.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        for line in paragraph.lines() {
            let _ = writeln!(out, "{}", escape(line));
        }
    }
    out.push_str(TAIL);
    out
}

fn render_flag(out: &mut String, flag: &Flag) {
    out.push_str(".TP\n");
    let names: Vec<String> = flag
        .names
        .split(", ")
        .map(|n| format!("\\fB{}\\fR", escape(n)))
        .collect();
    let _ = write!(out, "{}", names.join(", "));
    if !flag.arg.is_empty() {
        let _ = write!(out, " \\fI{}\\fR", escape(flag.arg));
    }
    out.push('\n');
    for line in flag.help {
        let _ = writeln!(out, "{}", escape(line));
    }
    if !flag.default.is_empty() {
        let _ = writeln!(out, ".br\nDefault: {}", escape(flag.default));
    }
}

/// `text` as roff body text: backslashes and hyphens escaped, and a line
/// that would start with a control character (`.` or `'`) guarded.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    if text.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rookery.1");

    #[test]
    fn the_checked_in_man_page_is_the_generated_one() {
        let page = render();
        if std::env::var_os("ROOKERY_WRITE_MAN").is_some() {
            std::fs::write(CHECKED_IN, &page).unwrap();
        }
        let checked_in = std::fs::read_to_string(CHECKED_IN).unwrap_or_default();
        assert!(
            checked_in == page,
            "docs/rookery.1 is not what src/cli/flags.rs makes: rewrite it with \
             ROOKERY_WRITE_MAN=1 cargo test --bin rookery man"
        );
    }

    #[test]
    fn every_flag_of_help_is_in_the_man_page() {
        let page = render().replace("\\-", "-");
        let help = flags::help();
        let mut flags = 0;
        for word in help.split(|c: char| c.is_whitespace() || c == ',' || c == '[') {
            let word = word.trim_end_matches([')', '.', ';', ':']);
            let is_flag = (word.starts_with("--") && word.len() > 2)
                || (word.len() == 2 && word.starts_with('-') && word != "--");
            if is_flag
                && word[1..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                flags += 1;
                assert!(page.contains(word), "the man page lacks {word}");
            }
        }
        for flag in flags::FLAGS {
            for name in flag.names.split(", ") {
                assert!(
                    page.contains(&format!("\\fB{name}\\fR")),
                    "no entry for {name}"
                );
            }
        }
        assert!(flags > 20, "only {flags} flags found in --help");
    }

    #[test]
    fn roff_control_characters_are_escaped() {
        assert_eq!(escape(".x"), "\\&.x");
        assert_eq!(escape("'x"), "\\&'x");
        assert_eq!(escape("a\\b-c"), "a\\eb\\-c");
    }
}
