//! The metric-line grammar of command jobs: a stdout line `NAME: VALUE` is a metric
//! point; repeats of a name form a series. Anything else is ordinary output.

/// A parsed `NAME: VALUE` line.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine<'a> {
    pub name: &'a str,
    pub value: f64,
}

/// Longest metric name accepted; longer "names" are treated as ordinary output.
pub const MAX_METRIC_NAME_LEN: usize = 128;

/// Parses one stdout line. Returns `None` for lines that are not metrics.
///
/// The name is an identifier (`[A-Za-z_][A-Za-z0-9_./-]*`), so prose such as
/// `Epoch 3: done` is not mistaken for a metric. Values are floats; `nan`, `inf` and
/// `-inf` (any case) are kept as such, because a diverged run is evidence too.
pub fn parse_metric_line(line: &str) -> Option<MetricLine<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (name, value) = line.split_once(':')?;
    let name = name.trim();
    if !is_metric_name(name) {
        return None;
    }
    let value = value.trim();
    let value: f64 = value.parse().ok()?;
    Some(MetricLine { name, value })
}

/// True when `name` can be a metric name.
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_METRIC_NAME_LEN
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_format() {
        assert_eq!(
            parse_metric_line("train_loss: 0.342"),
            Some(MetricLine {
                name: "train_loss",
                value: 0.342
            })
        );
        assert_eq!(
            parse_metric_line("val_f1:0.756\n").map(|m| m.value),
            Some(0.756)
        );
        assert_eq!(
            parse_metric_line("  acc :  1e-3  ").map(|m| m.name),
            Some("acc")
        );
    }

    #[test]
    fn keeps_non_finite_values() {
        assert!(parse_metric_line("loss: nan").is_some_and(|m| m.value.is_nan()));
        assert!(parse_metric_line("loss: NaN").is_some_and(|m| m.value.is_nan()));
        assert_eq!(
            parse_metric_line("loss: inf").map(|m| m.value),
            Some(f64::INFINITY)
        );
        assert_eq!(
            parse_metric_line("loss: -inf").map(|m| m.value),
            Some(f64::NEG_INFINITY)
        );
    }

    #[test]
    fn ignores_other_lines() {
        for line in [
            "",
            "hello world",
            "Epoch 3: done",
            "loss: 0.5 (best)",
            ": 1.0",
            "9lives: 1",
            "time: 12:30",
            "url: http://x",
        ] {
            assert_eq!(parse_metric_line(line), None, "{line:?}");
        }
    }
}
