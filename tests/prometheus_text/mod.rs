//! A strict parser of the Prometheus text exposition format (version
//! 0.0.4), for `tests/metrics.rs`: it needs nothing outside Rust, so the
//! `/metrics` checks run on every machine. It accepts only what the format
//! allows: every line a comment (`# HELP`, `# TYPE` or other), blank, or a
//! sample `name{label="value",...} value [timestamp]`; names and label names
//! of the allowed characters; label values with only `\\`, `\"` and `\n`
//! escapes; one `TYPE` per family, before its samples; a family's samples
//! together. Beyond the format, as a scraper of rookery it also wants a
//! `TYPE` for every family and counters named `*_total`.

use std::collections::HashMap;

/// What a scrape holds.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name as in its `TYPE` line → type (`counter`, `gauge`, ...).
    pub families: HashMap<String, String>,
    /// `name{k=v,...}` (labels sorted by name, values unescaped) → value.
    pub samples: HashMap<String, f64>,
}

/// Why a text is not a valid exposition: the line (1-based) and what is
/// wrong with it.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub what: String,
}

const TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

/// Parses `text`, checking every rule in the module doc.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    let mut helped = Vec::<String>::new();
    // Families whose samples have started, and the one in progress.
    let mut finished = Vec::<String>::new();
    let mut current: Option<String> = None;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ParseError {
            line: text.lines().count(),
            what: "the text does not end with a newline".into(),
        });
    }
    for (i, line) in text.lines().enumerate() {
        let fail = |what: String| ParseError { line: i + 1, what };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    check_metric_name(name).map_err(&fail)?;
                    if !TYPES.contains(&kind) {
                        return Err(fail(format!("unknown type {kind:?}")));
                    }
                    if out.families.contains_key(name) {
                        return Err(fail(format!("a second TYPE for {name}")));
                    }
                    if finished.iter().any(|f| f == name) || current.as_deref() == Some(name) {
                        return Err(fail(format!("TYPE for {name} after its samples")));
                    }
                    out.families.insert(name.to_string(), kind.to_string());
                }
                (Some("TYPE"), ..) => return Err(fail("TYPE without name and type".into())),
                (Some("HELP"), Some(name), _) => {
                    check_metric_name(name).map_err(&fail)?;
                    if helped.iter().any(|h| h == name) {
                        return Err(fail(format!("a second HELP for {name}")));
                    }
                    helped.push(name.to_string());
                }
                (Some("HELP"), ..) => return Err(fail("HELP without a name".into())),
                _ => {} // any other comment
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line).map_err(&fail)?;
        let family = family_of(&out.families, &name)
            .ok_or_else(|| fail(format!("sample {name} has no TYPE line before it")))?;
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                return Err(fail(format!("samples of {family} are not together")));
            }
            if let Some(done) = current.replace(family.clone()) {
                finished.push(done);
            }
        }
        let kind = out.families[&family].as_str();
        if kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(fail(format!("counter {name} is {value}")));
        }
        let mut labels = labels;
        labels.sort();
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        if out.samples.insert(key.clone(), value).is_some() {
            return Err(fail(format!("a second sample {key}")));
        }
    }
    for (name, kind) in &out.families {
        if kind == "counter" && !name.ends_with("_total") {
            return Err(ParseError {
                line: 0,
                what: format!("counter {name} is not named *_total"),
            });
        }
    }
    Ok(out)
}

/// The family a sample belongs to: its own name, or for a histogram or
/// summary its name without `_bucket`, `_sum` or `_count`.
fn family_of(families: &HashMap<String, String>, name: &str) -> Option<String> {
    if families.contains_key(name) {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            families.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then(|| base.to_string())
    })
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn check_metric_name(name: &str) -> Result<(), String> {
    let ok = name.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
    });
    if name.is_empty() || !ok {
        return Err(format!("bad metric name {name:?}"));
    }
    Ok(())
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn check_label_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if name.is_empty() || !ok || name.starts_with("__") {
        return Err(format!("bad label name {name:?}"));
    }
    Ok(())
}

type Sample = (String, Vec<(String, String)>, f64);

/// `name{labels} value [timestamp]` → (name, labels, value).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..end];
    check_metric_name(name)?;
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without =")?;
            let label = &rest[..eq];
            check_label_name(label)?;
            if labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label} twice"));
            }
            let (value, after) = label_value(&rest[eq + 1..])?;
            labels.push((label.to_string(), value));
            rest = match after.strip_prefix(',') {
                Some(after) => after,
                None if after.starts_with('}') => after,
                None => return Err(format!("expected , or }} after label {label}")),
            };
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value)?;
    if let Some(stamp) = fields.next() {
        stamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {stamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok((name.to_string(), labels, value))
}

/// A quoted label value at the start of `text` → (unescaped, the rest).
fn label_value(text: &str) -> Result<(String, &str), String> {
    let mut chars = text
        .strip_prefix('"')
        .ok_or("label value not quoted")?
        .char_indices();
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 2..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape \\{:?}", other.map(|o| o.1))),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value".into())
}

/// A Go `ParseFloat` value: decimal or exponent forms, `NaN`, `+Inf`,
/// `-Inf`.
fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => return Ok(f64::NAN),
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust also takes "inf", "nan" and "infinity" in any case; the format
    // does not.
    if text
        .chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return Err(format!("bad value {text:?}"));
    }
    text.parse().map_err(|_| format!("bad value {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total Things.\n# TYPE a_total counter\na_total 3\n\
                        # TYPE g gauge\ng{code=\"1000\",b=\"x\\\"y\\\\z\\n\"} 1.5e3\ng 0 1700000000\n\
                        # a comment\n\n";

    #[test]
    fn a_valid_exposition_parses_to_its_samples() {
        let e = parse(GOOD).unwrap();
        assert_eq!(e.families["a_total"], "counter");
        assert_eq!(e.families["g"], "gauge");
        assert_eq!(e.samples["a_total{}"], 3.0);
        assert_eq!(e.samples["g{b=x\"y\\z\n,code=1000}"], 1500.0);
        assert_eq!(e.samples["g{}"], 0.0);
        assert_eq!(e.samples.len(), 3);
    }

    #[test]
    fn every_rule_is_checked() {
        let bad = [
            ("a_total 1\n", "no TYPE line"),
            ("# TYPE a counter\na 1\n", "not named *_total"),
            ("# TYPE 1a gauge\n", "bad metric name"),
            ("# TYPE a gauge\n# TYPE a gauge\n", "a second TYPE"),
            ("# TYPE a gauge\n# HELP a x\n# HELP a y\n", "a second HELP"),
            ("# TYPE a number\n", "unknown type"),
            ("# TYPE a gauge\na{1b=\"x\"} 1\n", "bad label name"),
            ("# TYPE a gauge\na{__b=\"x\"} 1\n", "bad label name"),
            ("# TYPE a gauge\na{b=x} 1\n", "not quoted"),
            ("# TYPE a gauge\na{b=\"x} 1\n", "unterminated"),
            ("# TYPE a gauge\na{b=\"\\t\"} 1\n", "bad escape"),
            ("# TYPE a gauge\na{b=\"x\",b=\"y\"} 1\n", "label b twice"),
            ("# TYPE a gauge\na{b=\"x\" c=\"y\"} 1\n", "expected ,"),
            ("# TYPE a gauge\na one\n", "bad value"),
            ("# TYPE a gauge\na inf\n", "bad value"),
            ("# TYPE a gauge\na\n", "no space"),
            ("# TYPE a gauge\na 1 2 3\n", "after the timestamp"),
            ("# TYPE a gauge\na 1 x\n", "bad timestamp"),
            (
                "# TYPE a_total counter\na_total -1\n",
                "counter a_total is -1",
            ),
            ("# TYPE a gauge\na 1\n# TYPE a gauge\n", "a second TYPE"),
            (
                "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 2\n",
                "not together",
            ),
            ("# TYPE a gauge\na 1\na 2\n", "a second sample"),
            ("# TYPE a gauge\na 1", "newline"),
        ];
        for (text, why) in bad {
            let err = parse(text).expect_err(text);
            assert!(err.what.contains(why), "{text:?}: {err:?}, wanted {why:?}");
        }
    }

    #[test]
    fn histogram_samples_belong_to_their_family() {
        let text = "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        let e = parse(text).unwrap();
        assert_eq!(e.samples["h_count{}"], 2.0);
        assert!(parse("# TYPE h gauge\nh_sum 3\n").is_err());
    }
}
