//! Readers of flags' values: durations, sizes, rates, WebSocket paths and
//! `--allow-origin` origins. Each says what is wrong with a value it
//! refuses, or only that it refused it where the caller words the message.

use std::time::Duration;

use rookery::proto::rate::Rate;

use super::error::shown;

/// Parses a duration: `250ms`, `5s`, `2m`, `1h`, or `0`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses a size: `65536`, `64KiB`, `1MiB`, `2GiB`, `10KB`, `1MB`.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses a rate: `N`, `N/s`, `N:BURST` or `N/s:BURST`, each number read
/// by `number` (a count, or a SIZE); `0` alone is no limit (`Ok(None)`).
/// The burst defaults to `N`.
pub(super) fn parse_rate(text: &str, number: fn(&str) -> Option<u64>) -> Result<Option<Rate>, ()> {
    if text == "0" {
        return Ok(None);
    }
    let (average, burst) = match text.split_once(':') {
        Some((average, burst)) => (average, Some(burst)),
        None => (text, None),
    };
    let average = average.strip_suffix("/s").unwrap_or(average);
    let per_second = number(average).ok_or(())?;
    let burst = match burst {
        Some(burst) => number(burst).ok_or(())?,
        None => per_second,
    };
    Rate::new(per_second, burst).map(Some).ok_or(())
}

/// Why `path` cannot be a WebSocket path, if it cannot: it must be
/// absolute, and free of anything that would need escaping in a URL or in
/// the chat page's script.
pub(super) fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("expected a path starting with '/', e.g. /chat".into());
    }
    // Rooms are PATH/NAME: under `/chat/` they would be `/chat//NAME`,
    // which no client asks for. Refused rather than trimmed, so that the
    // URL clients are given is the one the server answers.
    if path.len() > 1 && path.ends_with('/') {
        return Some(format!(
            "a path cannot end with '/' (rooms are PATH/NAME): write '{}'",
            match path.trim_end_matches('/') {
                "" => "/".to_string(),
                trimmed => shown(trimmed),
            }
        ));
    }
    let bad = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/-._~!$&'()*+,;=:@%".contains(c)))?;
    Some(match bad {
        '?' => "a path cannot hold '?': what follows it is a query, which is not part of the path".into(),
        '#' => "a path cannot hold '#': what follows it is a fragment, which never reaches the server".into(),
        ' ' => "a path cannot hold spaces".into(),
        c => format!(
            "a path cannot hold '{}' (letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ % only)",
            shown(&c.to_string())
        ),
    })
}

/// An `--allow-origin` value as browsers send it in `Origin`, or why it
/// can never match one: `*` (any origin), or `scheme://host[:port]` with the
/// scheme `http` or `https`, nothing after the port, and the host in ASCII.
/// The result is lowercase and without the scheme's default port, as
/// browsers write it (`HTTPS://A.Example:443` is `https://a.example`).
pub(super) fn parse_origin(value: &str) -> Result<String, String> {
    const EXAMPLE: &str = "e.g. https://a.example or http://192.168.1.2:8080, or * for any";
    if value == "*" {
        return Ok(value.to_string());
    }
    let lower = value.to_ascii_lowercase();
    let Some((scheme, rest)) = lower.split_once("://") else {
        return Err(format!(
            "an origin starts with http:// or https:// ({EXAMPLE})"
        ));
    };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(format!(
                "an origin's scheme is http or https, that of the page a browser shows ({EXAMPLE})"
            ))
        }
    };
    if let Some(at) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "an origin has no path (nor anything after the host and port): write '{}'",
            shown(&value[..scheme.len() + 3 + at])
        ));
    }
    if rest.contains('@') {
        return Err(format!("an origin holds no user name ({EXAMPLE})"));
    }
    let (host, port) = if rest.starts_with('[') {
        const V6: &str = "'[' opens an IPv6 address, e.g. http://[::1]:8080";
        let end = rest.find(']').ok_or(V6)?;
        let (host, tail) = rest.split_at(end + 1);
        if host[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err(V6.into());
        }
        match tail {
            "" => (host, None),
            _ => (host, Some(tail.strip_prefix(':').ok_or(V6)?)),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if !host.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !host.split('.').all(label_ok) {
            return Err(format!(
                "'{}' is not a host name (ASCII letters, digits, '-' and dots; an international name in its xn-- form)",
                shown(&value[scheme.len() + 3..scheme.len() + 3 + host.len()])
            ));
        }
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("'{}' is not a port (1 to 65535)", shown(p))),
        },
    };
    Ok(match port {
        Some(n) if n != default_port => format!("{scheme}://{host}:{n}"),
        _ => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_and_written_as_browsers_send_them() {
        for (given, stored) in [
            ("*", "*"),
            ("https://a.example", "https://a.example"),
            ("HTTPS://A.Example", "https://a.example"),
            ("http://a.example:8080", "http://a.example:8080"),
            ("https://a.example:443", "https://a.example"),
            ("http://a.example:80", "http://a.example"),
            ("http://a.example:443", "http://a.example:443"),
            ("http://192.168.1.2:8080", "http://192.168.1.2:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[::1]", "http://[::1]"),
            ("http://localhost", "http://localhost"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(stored), "{given}");
        }
        for (given, why) in [
            (
                "http://a.example/",
                "has no path (nor anything after the host and port): write 'http://a.example'",
            ),
            (
                "https://a.example/app",
                "has no path (nor anything after the host and port): write 'https://a.example'",
            ),
            ("https://a.example?x", "has no path"),
            ("a.example", "an origin starts with http:// or https://"),
            ("", "an origin starts with http:// or https://"),
            ("ws://a.example", "an origin's scheme is http or https"),
            ("file://", "an origin's scheme is http or https"),
            ("null", "an origin starts with http:// or https://"),
            ("**", "an origin starts with http:// or https://"),
            ("https://", "'' is not a host name"),
            ("https://a..example", "'a..example' is not a host name"),
            (
                "https://bücher.example",
                "'bücher.example' is not a host name",
            ),
            ("https://a example", "'a example' is not a host name"),
            ("https://a.example:", "'' is not a port"),
            ("https://a.example:0", "'0' is not a port"),
            ("https://a.example:99999", "'99999' is not a port"),
            ("https://a.example:+80", "'+80' is not a port"),
            ("https://user@a.example", "holds no user name"),
            ("http://[::1", "'[' opens an IPv6 address"),
            ("http://[nope]:80", "'[' opens an IPv6 address"),
            ("http://[::1]x", "'[' opens an IPv6 address"),
        ] {
            let err = parse_origin(given).unwrap_err();
            assert!(err.contains(why), "{given}: {err}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "5", "s", "-5s", "5 s", "1.5s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("1MB"), Some(1_000_000));
        for bad in ["", "MiB", "1 MiB", "1TiB", "-1", "99999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }
}
