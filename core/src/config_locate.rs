//! Positions of keys and values in `config.yaml` text, for error messages.
//!
//! serde_yaml reports positions only for syntax and type errors, so a semantic error
//! (an unknown method in a stage, an override path that names nothing, a claim on an
//! unknown metric) is located here by walking a path through the text. This is not a
//! YAML parser: it understands what configs are written with (block and flow mappings
//! and sequences, quoted scalars, comments) well enough to find a key *inside the
//! value of its parent*, never in a sibling. When a step cannot be found, the position
//! of the deepest step that was found is used, so an error never points nowhere.

use std::ops::Range;

/// One step of a path through the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At<'a> {
    /// A mapping key among the direct children of the current value.
    Key(&'a str),
    /// The item of the current sequence whose `key` has the scalar `value`
    /// (the claim whose `id` is `beats-linear`).
    Item { key: &'a str, value: &'a str },
    /// A scalar equal to this text inside the current value (a list element).
    Value(&'a str),
    /// The value of the current key (the `0` of `seeds: 0`).
    ValueOfKey,
}

/// The 1-based (line, column) of a path; (0, 0) when not even the first step is found.
pub fn locate(text: &str, path: &[At<'_>]) -> (usize, usize) {
    let mut extent = 0..text.len();
    let mut found = None;
    for step in path {
        let next = match *step {
            At::Key(key) => find_key(text, extent.clone(), key)
                .map(|at| (at, value_extent(text, at, key.len()))),
            At::Item { key, value } => find_item(text, extent.clone(), key, value),
            At::Value(value) => {
                find_value(text, extent.clone(), value).map(|at| (at, at..at + value.len()))
            }
            At::ValueOfKey => value_start(text, extent.clone()).map(|at| (at, extent.clone())),
        };
        let Some((at, inner)) = next else { break };
        found = Some(at);
        extent = inner;
    }
    found.map_or((0, 0), |offset| line_column(text, offset))
}

/// The text of a top-level entry, from its key (at the start of a line) to the end
/// of its value: `limits:` and its block, parsed before the rest of the config.
pub fn top_level_entry(text: &str, key: &str) -> Option<Range<usize>> {
    let at = find_key(text, 0..text.len(), key)?;
    if line_column(text, at).1 != 1 {
        return None;
    }
    Some(at..value_extent(text, at, key.len()).end)
}

/// The 1-based (line, column) of the first YAML alias (`*name`) outside quotes and
/// comments.
pub fn first_alias(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mask = code_mask(text);
    (0..bytes.len())
        .find(|&i| {
            mask[i]
                && bytes[i] == b'*'
                && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'[' | b'{' | b','))
                && bytes
                    .get(i + 1)
                    .is_some_and(|b| !b.is_ascii_whitespace() && !b",[]{}".contains(b))
        })
        .map(|at| line_column(text, at))
}

/// The 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The significant bytes of the text: `true` where a byte is code (not inside a
/// comment and not inside a quoted scalar, quotes themselves included as code).
fn code_mask(text: &str) -> Vec<bool> {
    let bytes = text.as_bytes();
    let mut mask = vec![true; bytes.len()];
    let mut quote: Option<u8> = None;
    let mut in_comment = false;
    let mut last_code = b'\n';
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_comment {
            mask[i] = b == b'\n';
            in_comment = b != b'\n';
            last_code = b'\n';
        } else if let Some(q) = quote {
            if b == q && q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                mask[i] = false;
                mask[i + 1] = false;
                i += 2;
                continue;
            }
            if b == b'\\' && q == b'"' {
                mask[i] = false;
                if i + 1 < bytes.len() {
                    mask[i + 1] = false;
                }
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
                last_code = b;
            } else {
                mask[i] = false;
            }
        } else if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            mask[i] = false;
            in_comment = true;
        } else if (b == b'"' || b == b'\'')
            && matches!(last_code, b'\n' | b':' | b'-' | b'[' | b'{' | b',' | b'?')
        {
            quote = Some(b);
            last_code = b;
        } else if !matches!(b, b' ' | b'\t') {
            last_code = b;
        }
        i += 1;
    }
    mask
}

/// Key candidates of the extent as (offset, flow depth, column), outside quotes and
/// comments; the key may itself be quoted.
fn find_key(text: &str, extent: Range<usize>, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mask = code_mask(text);
    let mut depth = 0i32;
    let mut best: Option<(i32, usize, usize)> = None;
    let mut i = extent.start;
    while i < extent.end {
        if !mask[i] {
            i += 1;
            continue;
        }
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
        if let Some(len) = key_match(text, i, key) {
            if i + len <= extent.end {
                let column = line_column(text, i).1;
                let rank = (depth, if depth == 0 { column } else { 0 }, i);
                if best.is_none_or(|b| rank < b) {
                    best = Some(rank);
                }
            }
        }
        i += 1;
    }
    best.map(|(_, _, at)| at)
}

/// If a key `key` (plain or quoted) followed by `:` starts at `at`, the length up to
/// and including the colon.
fn key_match(text: &str, at: usize, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let boundary_before =
        at == 0 || matches!(bytes[at - 1], b' ' | b'\t' | b'\n' | b'{' | b',' | b'[');
    if !boundary_before {
        return None;
    }
    let rest = &text[at..];
    let (body_len, quoted) = match rest.as_bytes().first() {
        Some(&q @ (b'"' | b'\'')) => {
            let inner = rest[1..].strip_prefix(key)?;
            inner.strip_prefix(q as char)?;
            (key.len() + 2, true)
        }
        _ => {
            rest.strip_prefix(key)?;
            (key.len(), false)
        }
    };
    let after = &rest[body_len..];
    let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
    let after_colon = after[spaces..].strip_prefix(':')?;
    let ok = quoted
        || after_colon.is_empty()
        || after_colon.starts_with([' ', '\t', '\n', '\r', ',', '}']);
    ok.then_some(body_len + spaces + 1)
}

/// The extent of the value of the key starting at `at`.
fn value_extent(text: &str, at: usize, key_len: usize) -> Range<usize> {
    let bytes = text.as_bytes();
    let mut colon = at + key_len;
    while colon < bytes.len() && bytes[colon] != b':' {
        colon += 1;
    }
    let mut start = colon + 1;
    while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
        start += 1;
    }
    match bytes.get(start) {
        Some(b'{' | b'[') => start..matching_close(text, start),
        Some(b'\n' | b'\r' | b'#') | None => {
            let key_column = line_column(text, at).1 - 1;
            start..block_end(text, start, key_column)
        }
        Some(_) => {
            // A plain scalar ends at the line's end, or at a flow delimiter (outside quotes).
            let mask = code_mask(text);
            let end = (start..bytes.len())
                .find(|&i| bytes[i] == b'\n' || (mask[i] && matches!(bytes[i], b',' | b'}' | b']')))
                .unwrap_or(text.len());
            start..end
        }
    }
}

/// The offset after the bracket that closes the one at `open`.
fn matching_close(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    let mask = code_mask(text);
    let mut depth = 0;
    for i in open..bytes.len() {
        if !mask[i] {
            continue;
        }
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The end of a block value that starts after a key at `key_column` (0-based): the
/// first later line, neither blank nor a comment, indented no deeper than the key
/// (a `- ` item at the key's own column still belongs to it, as YAML allows).
fn block_end(text: &str, from: usize, key_column: usize) -> usize {
    let mut line_start = text[from..]
        .find('\n')
        .map_or(text.len(), |nl| from + nl + 1);
    while line_start < text.len() {
        let line_end = text[line_start..]
            .find('\n')
            .map_or(text.len(), |nl| line_start + nl);
        let line = &text[line_start..line_end];
        let content = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - content.len();
        let blank = content.trim().is_empty() || content.starts_with('#');
        let item_at_key_column =
            indent == key_column && (content == "-" || content.starts_with("- "));
        if !blank && indent <= key_column && !item_at_key_column {
            return line_start;
        }
        line_start = line_end + 1;
    }
    text.len()
}

/// The items of the sequence in the extent: flow items split at top-level commas,
/// block items starting at `- ` of the shallowest indentation.
fn sequence_items(text: &str, extent: Range<usize>) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mask = code_mask(text);
    let first = (extent.start..extent.end).find(|&i| mask[i] && !bytes[i].is_ascii_whitespace());
    let Some(first) = first else {
        return Vec::new();
    };
    let mut items = Vec::new();
    if bytes[first] == b'[' {
        let (mut depth, mut start) = (0, first + 1);
        for i in first..extent.end {
            if !mask[i] {
                continue;
            }
            match bytes[i] {
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        items.push(start..i);
                        break;
                    }
                }
                b',' if depth == 1 => {
                    items.push(start..i);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items;
    }
    let dashes: Vec<usize> = (extent.start..extent.end)
        .filter(|&i| {
            mask[i] && bytes[i] == b'-' && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace())
        })
        .filter(|&i| {
            text[..i]
                .rsplit('\n')
                .next()
                .is_some_and(|prefix| prefix.trim().is_empty())
        })
        .collect();
    let Some(min_column) = dashes.iter().map(|&i| line_column(text, i).1).min() else {
        return Vec::new();
    };
    let starts: Vec<usize> = dashes
        .into_iter()
        .filter(|&i| line_column(text, i).1 == min_column)
        .collect();
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(extent.end);
        items.push(start + 1..end);
    }
    items
}

fn find_item(
    text: &str,
    extent: Range<usize>,
    key: &str,
    value: &str,
) -> Option<(usize, Range<usize>)> {
    for item in sequence_items(text, extent) {
        let Some(at) = find_key(text, item.clone(), key) else {
            continue;
        };
        let scalar = value_extent(text, at, key.len());
        let raw = text[scalar.clone()].trim();
        let raw = raw
            .split(" #")
            .next()
            .unwrap_or(raw)
            .trim_end_matches([',', '}'])
            .trim();
        if unquote(raw) == value {
            let start =
                item.start + text[item.clone()].len() - text[item.clone()].trim_start().len();
            return Some((start, item));
        }
    }
    None
}

fn unquote(raw: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    raw
}

/// A scalar token equal to `value` (plain or quoted) inside the extent.
fn find_value(text: &str, extent: Range<usize>, value: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mask = code_mask(text);
    let before_ok = |i: usize| {
        i == 0
            || matches!(
                bytes[i - 1],
                b' ' | b'\t' | b'\n' | b'[' | b',' | b'{' | b':' | b'-'
            )
    };
    let after_ok = |i: usize| {
        i >= bytes.len()
            || matches!(
                bytes[i],
                b' ' | b'\t' | b'\n' | b'\r' | b']' | b',' | b'}' | b'#'
            )
    };
    let mut i = extent.start;
    while i < extent.end {
        let rest = &text[i..extent.end];
        if mask[i] && before_ok(i) {
            if rest.starts_with(value) && after_ok(i + value.len()) {
                return Some(i);
            }
            if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
                if rest[1..]
                    .strip_prefix(value)
                    .is_some_and(|after| after.starts_with(q))
                {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// The first significant byte of a value extent.
fn value_start(text: &str, extent: Range<usize>) -> Option<usize> {
    let mask = code_mask(text);
    (extent.start..extent.end).find(|&i| mask[i] && !text.as_bytes()[i].is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: x\n# stages: in a comment\nmethods:\n  proposed: {}\n  base: {params.lr: 0.1}\nstages:\n  full: {seeds: 3, sweep: {lr: [1]}}\n  baselines:\n    methods: [proposed, 'bogus']\n    seeds: 0\nablations: {a: {}}\nclaims:\n  - {id: one, better: proposed, than: base, metric: acc}\n  - id: two\n    better: base\n    than: nope\n";

    #[test]
    fn finds_keys_in_their_parent_only() {
        assert_eq!(locate(TEXT, &[At::Key("stages")]), (6, 1));
        assert_eq!(
            locate(
                TEXT,
                &[At::Key("stages"), At::Key("full"), At::Key("sweep")]
            ),
            (7, 20)
        );
        assert_eq!(
            locate(
                TEXT,
                &[At::Key("methods"), At::Key("base"), At::Key("params.lr")]
            ),
            (5, 10)
        );
        // The top-level `ablations`, not a deeper key of the same name.
        assert_eq!(locate(TEXT, &[At::Key("ablations")]), (11, 1));
    }

    #[test]
    fn finds_values_and_items() {
        assert_eq!(
            locate(
                TEXT,
                &[
                    At::Key("stages"),
                    At::Key("baselines"),
                    At::Key("methods"),
                    At::Value("bogus")
                ]
            ),
            (9, 25)
        );
        assert_eq!(
            locate(
                TEXT,
                &[
                    At::Key("stages"),
                    At::Key("baselines"),
                    At::Key("seeds"),
                    At::ValueOfKey
                ]
            ),
            (10, 12)
        );
        assert_eq!(
            locate(
                TEXT,
                &[
                    At::Key("claims"),
                    At::Item {
                        key: "id",
                        value: "one"
                    },
                    At::Key("metric")
                ]
            ),
            (13, 45)
        );
        assert_eq!(
            locate(
                TEXT,
                &[
                    At::Key("claims"),
                    At::Item {
                        key: "id",
                        value: "two"
                    },
                    At::Key("than"),
                    At::ValueOfKey
                ]
            ),
            (16, 11)
        );
    }

    #[test]
    fn a_missing_step_falls_back_to_its_parent() {
        assert_eq!(
            locate(TEXT, &[At::Key("stages"), At::Key("ablations")]),
            (6, 1)
        );
        assert_eq!(locate(TEXT, &[At::Key("nothing")]), (0, 0));
    }
}
