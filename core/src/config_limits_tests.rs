//! Each limit of `config_limits`: the error names the file, line and column, the limit
//! and how to raise it, and raising it in a `limits:` block lets the config through.

use crate::config::ExperimentConfig;
use crate::config_error::ConfigError;
use crate::config_limits::{Limits, READ_CEILING};
use crate::expand::{expand_stage, StageRequest};
use crate::ids::Stage;
use std::path::Path;

/// A valid config with `params` extended by `extra_params`, the given stages, and
/// `top` (a `limits:` block, say) prepended.
fn config(top: &str, extra_params: &str, stages: &str) -> String {
    format!(
        "{top}name: x\nprimary_metric: {{name: acc, goal: max}}\njob:\n  command: [python, runfile.py]\n  \
         params: {{a: 1, b: 1{extra_params}}}\nmethods:\n  proposed: {{}}\nstages:\n{stages}"
    )
}

const ONE_STAGE: &str = "  implementation: {seeds: 1}\n";

fn refused(text: &str) -> ConfigError {
    ExperimentConfig::parse(text, Path::new("exp/config.yaml")).expect_err("over a limit")
}

fn accepted(text: &str) {
    if let Err(err) = ExperimentConfig::parse(text, Path::new("exp/config.yaml")) {
        panic!("refused: {err}");
    }
}

/// The error is positioned, names `limits.<key>` and the limit, and says how to raise it.
fn assert_names_limit(err: &ConfigError, key: &str, limit: u64, at: (usize, usize)) {
    assert_eq!((err.line, err.column), at, "{err}");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("exp/config.yaml:{}:{}: ", at.0, at.1)),
        "{shown}"
    );
    assert!(err.message.contains(&format!("limits.{key}")), "{shown}");
    assert!(err.message.contains(&limit.to_string()), "{shown}");
    assert!(
        err.hint
            .contains(&format!("`limits: {{{key}: N}}` at the top level")),
        "{shown}"
    );
}

#[test]
fn the_defaults_pass_an_ordinary_config_and_can_be_raised_in_a_limits_block() {
    let text = config("", "", ONE_STAGE);
    let loaded = ExperimentConfig::parse(&text, Path::new("c.yaml")).expect("valid");
    assert_eq!(loaded.config.limits, Limits::default());
    let raised = config(
        "limits:\n  jobs_per_stage: 2000000  # a big sweep\n  list_items: 20000\n",
        "",
        ONE_STAGE,
    );
    let loaded = ExperimentConfig::parse(&raised, Path::new("c.yaml")).expect("valid");
    let parsed = Limits::of_text(&raised, Path::new("c.yaml")).expect("limits");
    assert_eq!(parsed, loaded.config.limits);
    assert_eq!(parsed.jobs_per_stage, 2_000_000);
    assert_eq!(parsed.list_items, 20_000);
    assert_eq!(parsed.string_bytes, Limits::default().string_bytes);
}

#[test]
fn a_long_string_is_refused_at_its_position() {
    let long = "x".repeat(70_000);
    let err = refused(&config("", &format!(", note: {long}"), ONE_STAGE));
    assert_names_limit(&err, "string_bytes", 65_536, (5, 30));
    assert!(err.message.contains("70000 bytes"), "{err}");
    accepted(&config(
        "limits: {string_bytes: 100000}\n",
        &format!(", note: {long}"),
        ONE_STAGE,
    ));
}

#[test]
fn a_long_sweep_list_is_refused_with_its_key_path_and_length() {
    let values: Vec<String> = (0..10_001).map(|i| i.to_string()).collect();
    let stage = format!(
        "  full:\n    seeds: 1\n    sweep:\n      params.a: [{}]\n",
        values.join(", ")
    );
    let err = refused(&config("", "", &stage));
    assert_names_limit(&err, "list_items", 10_000, (12, 17));
    assert!(
        err.message
            .starts_with("stages.full.sweep.params.a: a list of 10001 items"),
        "{err}"
    );
    accepted(&config("limits: {list_items: 10001}\n", "", &stage));
}

#[test]
fn a_mapping_with_too_many_entries_is_refused() {
    let entries: Vec<String> = (0..10_001).map(|i| format!("k{i}: {i}")).collect();
    let extra = format!(", table: {{{}}}", entries.join(", "));
    let err = refused(&config("", &extra, ONE_STAGE));
    assert_names_limit(&err, "list_items", 10_000, (5, 31));
    assert!(err.message.contains("a mapping of 10001 entries"), "{err}");
}

#[test]
fn deep_nesting_is_refused_and_the_ceiling_cannot_be_passed() {
    let deep = format!(", deep: {}1{}", "[".repeat(40), "]".repeat(40));
    let err = refused(&config("", &deep, ONE_STAGE));
    // The top-level mapping is level 1, `job` 2, `params` 3: the 30th `[`, at column
    // 59, opens level 33.
    assert_names_limit(&err, "nesting_depth", 32, (5, 59));
    accepted(&config("limits: {nesting_depth: 50}\n", &deep, ONE_STAGE));
    let err = refused(&config("limits: {nesting_depth: 500}\n", "", ONE_STAGE));
    assert_eq!((err.line, err.column), (1, 25), "{err}");
    assert!(err.message.contains("ceiling 100"), "{err}");
}

#[test]
fn a_long_file_is_refused_where_it_passes_the_limit() {
    let padding = format!("# {}\n", "-".repeat(1000)).repeat(4200);
    let text = config("", "", ONE_STAGE) + &padding;
    let err = refused(&text);
    // Positioned at the byte where the text passes 4 MiB, inside the comment lines.
    let before = &text[..4 << 20];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |nl| nl + 1) + 1;
    assert_names_limit(&err, "config_bytes", 4 << 20, (line, column));
    assert!(line > 11 && column > 1, "{err}");
    accepted(&(config("limits: {config_bytes: 5000000}\n", "", ONE_STAGE) + &padding));
}

#[test]
fn a_file_past_the_read_ceiling_is_not_read_into_memory() {
    let path = std::env::temp_dir().join(format!("expcluster-ceiling-{}.yaml", std::process::id()));
    let file = std::fs::File::create(&path).expect("temp file");
    // Sparse: 100 GiB on no disk, of which at most the ceiling is read.
    file.set_len(100 << 30).expect("sparse");
    let err = ExperimentConfig::load(&path).expect_err("too long");
    std::fs::remove_file(&path).ok();
    assert!(
        err.message
            .contains(&format!("longer than {READ_CEILING} bytes")),
        "{err}"
    );
    assert!(err.hint.contains("cannot be raised"), "{err}");
}

/// The classic "billion laughs": nine aliases per level, nine levels.
fn billion_laughs(leaf: &str) -> String {
    let mut text = format!("    l0: &l0 [{}]\n", [leaf; 9].join(", "));
    for level in 1..9 {
        let aliases = vec![format!("*l{}", level - 1); 9].join(", ");
        text.push_str(&format!("    l{level}: &l{level} [{aliases}]\n"));
    }
    text
}

fn with_block_params(extra: &str) -> String {
    config("", "", ONE_STAGE).replace(
        "  params: {a: 1, b: 1}\n",
        &format!("  params:\n    a: 1\n    b: 1\n{extra}"),
    )
}

#[test]
fn a_billion_laughs_of_short_strings_meets_the_parsers_repetition_limit() {
    let err = refused(&with_block_params(&billion_laughs("lol")));
    // Positioned at the first alias.
    assert_eq!((err.line, err.column), (9, 14), "{err}");
    assert!(err.message.contains("aliases repeat"), "{err}");
    assert!(err.hint.contains("billion laughs"), "{err}");
}

#[test]
fn a_billion_laughs_of_long_strings_meets_the_expansion_limit() {
    // 9^9 copies of 60 KB: serde_yaml's own guard (100 alias jumps per event) would
    // let hundreds of megabytes through first.
    let leaf = format!("&s {}", "x".repeat(60_000));
    let text = with_block_params(&format!("    s: {leaf}\n{}", billion_laughs("*s")));
    let err = refused(&text);
    assert!(err.line > 0 && err.column > 0, "{err}");
    assert!(
        err.message.contains("once YAML aliases are expanded"),
        "{err}"
    );
    assert!(err.message.contains("limits.config_bytes"), "{err}");
    assert!(err.message.contains(&(16u64 << 20).to_string()), "{err}");
    assert!(
        err.hint
            .contains("`limits: {config_bytes: N}` at the top level"),
        "{err}"
    );
}

#[test]
fn many_aliases_of_a_long_list_meet_the_expansion_limit() {
    let anchor: Vec<String> = (0..5_000).map(|i| i.to_string()).collect();
    let text = with_block_params(&format!(
        "    big: &big [{}]\n    copies: [{}]\n",
        anchor.join(", "),
        vec!["*big"; 2_000].join(", ")
    ));
    let err = refused(&text);
    assert!(
        err.message.contains("once YAML aliases are expanded"),
        "{err}"
    );
}

#[test]
fn a_few_aliases_are_fine() {
    accepted(&with_block_params(
        "    shared: &shared {depth: 2, width: [64, 64]}\n    again: *shared\n",
    ));
}

fn ten_million_jobs(top: &str) -> String {
    let values: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    config(
        top,
        "",
        &format!(
            "  full:\n    seeds: 1000\n    sweep: {{params.a: [{}]}}\n",
            values.join(", ")
        ),
    )
}

#[test]
fn a_ten_million_job_stage_is_refused_from_arithmetic() {
    let err = refused(&ten_million_jobs(""));
    assert_names_limit(&err, "jobs_per_stage", 100_000, (9, 3));
    assert!(
        err.message.contains(
            "stage `full` expands to 10000000 jobs (1 variant × 10000 sweep points × 1000 seeds)"
        ),
        "{err}"
    );
    // Raised, it validates (expanding it is the researcher's call).
    accepted(&ten_million_jobs("limits: {jobs_per_stage: 10000000}\n"));
}

#[test]
fn a_job_matrix_past_u64_is_refused_without_overflowing() {
    let axis: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let axis = axis.join(", ");
    let sweep: Vec<String> = (0..6).map(|i| format!("params.p{i}: [{axis}]")).collect();
    let params: String = (0..6).map(|i| format!(", p{i}: 0")).collect();
    let stage = format!(
        "  full:\n    seeds: 1\n    sweep: {{{}}}\n",
        sweep.join(", ")
    );
    let err = refused(&config("", &params, &stage));
    assert!(
        err.message
            .contains(&format!("expands to more than {} jobs", u64::MAX)),
        "{err}"
    );
}

#[test]
fn expansion_checks_the_matrix_again_before_allocating() {
    let text = config("", "", "  full: {seeds: 5, sweep: {params.a: [1, 2]}}\n");
    let mut loaded = ExperimentConfig::parse(&text, Path::new("c.yaml")).expect("valid");
    loaded.config.limits.jobs_per_stage = 9;
    let request = StageRequest {
        stage: Stage::Full,
        code_digest: "c",
    };
    let err = expand_stage(&loaded, request).expect_err("10 jobs over a limit of 9");
    assert!(err.message.contains("expands to 10 jobs"), "{err}");
}

#[test]
fn a_malformed_limits_block_is_positioned_in_the_file() {
    let err = refused(&config("limits:\n  jobs: 5\n", "", ONE_STAGE));
    assert_eq!((err.line, err.column), (2, 3), "{err}");
    assert!(err.message.contains("unknown field `jobs`"), "{err}");
    assert!(err.hint.contains("jobs_per_stage"), "{err}");
}

#[test]
fn a_large_job_template_times_many_sweep_points_is_refused() {
    // 5,000 numbers are about 40 KB of resolved job, held once per sweep point: at
    // 2,000 points, some 80 MB for 2,000 jobs.
    let table: Vec<String> = (0..5_000).map(|i| i.to_string()).collect();
    let extra = format!(", table: [{}]", table.join(", "));
    let points: Vec<String> = (0..2_000).map(|i| i.to_string()).collect();
    let stage = format!(
        "  full:\n    seeds: 1\n    sweep: {{params.a: [{}]}}\n",
        points.join(", ")
    );
    let err = refused(&config("", &extra, &stage));
    assert_names_limit(&err, "stage_bytes", 64 << 20, (9, 3));
    assert!(
        err.message
            .contains("(1 variant × 2000 sweep points, each holding a job of up to"),
        "{err}"
    );
    accepted(&config(
        "limits: {stage_bytes: 100000000}\n",
        &extra,
        &stage,
    ));
}
