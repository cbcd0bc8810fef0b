//! The experiment definition (issue 11): `init`'s workspace, `validate`'s job matrix
//! and error messages (golden files under tests/golden/, rewritten with
//! UPDATE_GOLDEN=1), the generated experiment running as is, resubmission by
//! fingerprint, and the index of the stage arrays.

use expcluster_tests::{assert_success, expcluster, numpy_load, TestWorkspace};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// Compares `actual` with the golden file; UPDATE_GOLDEN=1 rewrites it instead.
fn check_golden(relative: &str, actual: &str) {
    let path = golden_dir().join(relative);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} is missing ({e}): run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {} (UPDATE_GOLDEN=1 rewrites it if the change is intended)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first_difference + 1
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- config errors

/// Every malformed config under golden/config_errors/: `validate` fails with exit
/// status 2, the message matches its golden text, carries file:line:column and a
/// hint, and the position points at the token named in the file's first line
/// (`# points-at: TOKEN`).
#[test]
fn malformed_configs_are_reported_at_the_offending_key_with_a_hint() {
    let dir = golden_dir().join("config_errors");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "at least ten malformed configs, found {}",
        cases.len()
    );
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let config = std::fs::read_to_string(case).unwrap();
        let points_at = config
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# points-at: "))
            .unwrap_or_else(|| panic!("{name}: first line must be `# points-at: TOKEN`"))
            .to_owned();
        let workspace = scratch.path().join(&name);
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("config.yaml"), &config).unwrap();
        let output = expcluster(&["validate", "--workspace", workspace.to_str().unwrap()]);
        let stderr = text(&output.stderr).replace(&scratch.path().display().to_string(), "<tmp>");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}: validate must fail with status 2\nstdout: {}\nstderr: {stderr}",
            text(&output.stdout)
        );
        check_golden(&format!("config_errors/{name}.txt"), &stderr);

        let prefix = format!("error: <tmp>/{name}/config.yaml:");
        let first = stderr.lines().next().unwrap_or_default();
        let Some(position) = first.strip_prefix(&prefix) else {
            failures.push(format!("{name}: no file:line:column in {first:?}"));
            continue;
        };
        let mut parts = position.splitn(3, ':');
        let line: usize = parts.next().unwrap().parse().unwrap();
        let column: usize = parts.next().unwrap().parse().unwrap();
        assert!(stderr.contains("\n  hint: "), "{name}: no hint in {stderr}");
        let at: String = config
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .chars()
            .skip(column - 1)
            .collect();
        if !at.starts_with(&points_at) {
            failures.push(format!(
                "{name}: {line}:{column} points at {at:?}, expected {points_at:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong positions:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------- init and validate

/// The tree under `root`, one relative path a line, folders with a trailing `/`.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push(format!("{relative}/"));
                walk(root, &path, out);
            } else {
                out.push(relative);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Dates and times replaced by placeholders, so the golden text is stable.
fn without_dates(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let is_date = i + 10 <= chars.len()
            && chars[i..i + 10].iter().enumerate().all(|(k, c)| {
                if k == 4 || k == 7 {
                    *c == '-'
                } else {
                    c.is_ascii_digit()
                }
            });
        if is_date {
            // A full RFC 3339 time runs to the closing quote.
            let end = if chars.get(i + 10) == Some(&'T') {
                (i..chars.len())
                    .find(|&j| chars[j] == '"')
                    .unwrap_or(chars.len())
            } else {
                i + 10
            };
            out.push_str(if end > i + 10 { "<time>" } else { "<date>" });
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn init_creates_the_seed_layout_and_never_overwrites() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("experiments");
    let output = expcluster(&["init", "golden-idea", "--root", root.to_str().unwrap()]);
    assert_success(&output);
    let workspace = root.join("golden-idea");

    let mut golden = String::new();
    golden.push_str("=== stdout\n");
    golden.push_str(&text(&output.stdout).replace(&root.display().to_string(), "<root>"));
    golden.push_str("=== tree\n");
    for entry in tree(&workspace) {
        golden.push_str(&entry);
        golden.push('\n');
    }
    for file in [
        "idea.md",
        "idea.json",
        "idea_evolution.md",
        "config.yaml",
        "runfile.py",
        "research_log.jsonl",
    ] {
        golden.push_str(&format!("=== {file}\n"));
        golden.push_str(&without_dates(
            &std::fs::read_to_string(workspace.join(file)).unwrap(),
        ));
    }
    check_golden("init.txt", &golden);

    // idea.json: the seed's metadata, version 1, times that parse.
    let idea: Value =
        serde_json::from_slice(&std::fs::read(workspace.join("idea.json")).unwrap()).unwrap();
    assert_eq!(idea["version"], 1);
    assert_eq!(idea["title"], "golden-idea");
    assert_eq!(idea["created"], idea["last_updated"]);
    assert!(idea["created"].as_str().unwrap().len() >= 20 && idea["update_reason"].is_string());
    let idea_md = std::fs::read_to_string(workspace.join("idea.md")).unwrap();
    for section in ["## Hypothesis", "## Method", "## Metrics", "## Claims"] {
        assert!(idea_md.contains(section), "idea.md lacks {section}");
    }
    // No staging folder is left behind.
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);

    // A second init of the same idea fails and changes nothing.
    std::fs::write(workspace.join("idea.md"), "my edits").unwrap();
    let again = expcluster(&["init", "golden-idea", "--root", root.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("never overwrites an idea"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("idea.md")).unwrap(),
        "my edits"
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    // Names that could escape the experiments folder are refused.
    for bad in ["../x", "a/b", ".hidden", ""] {
        let output = expcluster(&["init", bad, "--root", root.to_str().unwrap()]);
        assert!(!output.status.success(), "init {bad:?} must fail");
    }
    assert!(!scratch.path().join("x").exists());
}

#[test]
fn the_generated_experiment_validates_and_its_implementation_stage_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("experiments");
    assert!(
        expcluster(&["init", "golden-idea", "--root", root.to_str().unwrap()])
            .status
            .success()
    );
    let workspace = root.join("golden-idea");
    let ws = workspace.to_str().unwrap();

    let output = expcluster(&["validate", "--workspace", ws]);
    assert_success(&output);
    check_golden("validate_init.txt", &text(&output.stdout));
    assert!(
        std::fs::read_to_string(workspace.join("research_log.jsonl"))
            .unwrap()
            .is_empty(),
        "validate runs nothing"
    );

    let output = expcluster(&["submit", "--stage", "implementation", "--workspace", ws]);
    assert_success(&output);
    let losses = numpy_load(&workspace.join("experiment_results/train_losses.npy"));
    assert_eq!(
        losses["shape"],
        serde_json::json!([5]),
        "the implementation stage overrides epochs to 5"
    );
    let accuracies = numpy_load(&workspace.join("experiment_results/test_accuracies.npy"));
    assert!(accuracies["values"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v.as_f64().is_some_and(|a| (0.0..=1.0).contains(&a))));
    let log = std::fs::read_to_string(workspace.join("research_log.jsonl")).unwrap();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        types.contains(&"stage_started")
            && types.contains(&"job_completed")
            && types.contains(&"experiment_completed"),
        "{types:?}"
    );
    assert!(events.iter().all(|e| e["idea_version"] == 1));
}

// ---------------------------------------------------------------- resubmission

/// Fast, no numpy: a metric per epoch, the accuracy from the params.
const RUNFILE: &str = "import json, os\nparams = json.loads(os.environ['EXP_CONFIG'])['params']\nseed = int(os.environ['EXP_SEED'])\nfor epoch in range(params['epochs']):\n    print(f'train_loss: {1.0 / (epoch + 1 + seed)}')\nprint(f\"test_accuracy: {params['base'] + seed / 100}\")\n";

fn resubmission_config(baseline_base: f64) -> String {
    format!(
        "name: resubmit\nprimary_metric: {{name: test_accuracy, goal: max}}\nmetrics: [train_loss, test_accuracy]\n\
         job:\n  command: [python, runfile.py]\n  params: {{epochs: 3, base: 0.5}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.base: {baseline_base}}}\n\
         stages:\n  baselines: {{seeds: 2}}\n  full: {{seeds: 3, sweep: {{params.epochs: [2, 4]}}}}\n\
         resources: {{max_attempts: 1, timeout: 2m}}\n"
    )
}

fn submit(ws: &TestWorkspace, extra: &[&str]) -> String {
    let mut args = vec!["--slots", "2"];
    args.extend_from_slice(extra);
    ws.submit_here("baselines", &args)
}

/// (job id, fingerprint) of every successful job_completed event, in log order.
fn completions(ws: &TestWorkspace) -> Vec<(String, String)> {
    ws.events_of("job_completed")
        .iter()
        .filter(|e| e["status"] == "succeeded")
        .map(|e| {
            (
                e["job_id"].as_str().unwrap().to_owned(),
                e["fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The fingerprints index.json names for an array.
fn indexed_fingerprints(ws: &TestWorkspace, array: &str) -> BTreeSet<String> {
    let index = ws.read_json("experiment_results/index.json");
    let entry = &index[array];
    assert!(
        entry.is_object(),
        "index.json has no entry for {array}: {index}"
    );
    entry["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["fingerprint"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn resubmitting_runs_only_what_changed_and_keeps_earlier_results_on_record() {
    let ws = TestWorkspace::new(
        "resubmit",
        &resubmission_config(0.25),
        &[("runfile.py", RUNFILE)],
    );

    // 1. First submission: 2 methods x 2 seeds.
    submit(&ws, &[]);
    let first = completions(&ws);
    assert_eq!(first.len(), 4);

    // 2. The same again: nothing runs.
    let stdout = submit(&ws, &[]);
    assert!(stdout.contains("4 job(s), 4 already done"), "{stdout}");
    assert_eq!(completions(&ws), first, "no job ran the second time");

    // 3. A config value of one method: exactly that method's jobs rerun.
    let old_baseline: BTreeMap<String, String> = first
        .iter()
        .filter(|(id, _)| id.contains(".baseline."))
        .cloned()
        .collect();
    std::fs::write(ws.path("config.yaml"), resubmission_config(0.3)).unwrap();
    let stdout = submit(&ws, &[]);
    assert!(stdout.contains("4 job(s), 2 already done"), "{stdout}");
    let after_config: Vec<(String, String)> = completions(&ws)[4..].to_vec();
    let rerun: BTreeSet<&str> = after_config.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        rerun,
        old_baseline
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        "only the baseline's jobs rerun"
    );
    for (id, fingerprint) in &after_config {
        assert_ne!(
            &old_baseline[id], fingerprint,
            "a changed job has a new fingerprint"
        );
        // The earlier result stays on record under the earlier fingerprint.
        let old = ws
            .result_lines()
            .into_iter()
            .find(|line| {
                line["job_id"] == id.as_str() && line["fingerprint"] == old_baseline[id].as_str()
            })
            .unwrap_or_else(|| panic!("the earlier result of {id} is no longer on record"));
        let seed = old["seed"].as_f64().unwrap();
        assert_eq!(
            old["final_metrics"]["test_accuracy"].as_f64().unwrap(),
            0.25 + seed / 100.0
        );
    }
    // The stage arrays hold the new results only, and say so.
    let finals = numpy_load(&ws.path("experiment_results/baseline_baseline_test_accuracy.npy"));
    assert_eq!(finals["values"], serde_json::json!([0.3, 0.31]));
    let new_fingerprints: BTreeSet<String> = after_config.iter().map(|(_, f)| f.clone()).collect();
    assert_eq!(
        indexed_fingerprints(&ws, "baseline_baseline_test_accuracy.npy"),
        new_fingerprints
    );
    // The summary's statistics come from the new runs only (0.3 and 0.31), not a
    // mix with the superseded ones (0.25 and 0.26).
    let summary = ws.read_json("baseline_summary.json");
    let baseline = &summary["methods"]["baseline"]["test_accuracy"];
    assert_eq!(baseline["n"], 2, "{baseline}");
    let mean = baseline["mean"].as_f64().unwrap();
    assert!((mean - 0.305).abs() < 1e-12, "{baseline}");

    // 4. The code: every job runs it, so every job reruns.
    let mut code = RUNFILE.to_owned();
    code.push_str("# fixed a bug\n");
    std::fs::write(ws.path("runfile.py"), code).unwrap();
    let stdout = submit(&ws, &[]);
    assert!(stdout.contains("4 job(s), 0 already done"), "{stdout}");
    assert_eq!(completions(&ws).len(), 10);

    // 5. --rerun runs everything even though nothing changed.
    let stdout = submit(&ws, &["--rerun"]);
    assert!(stdout.contains("4 job(s)"), "{stdout}");
    let all = completions(&ws);
    assert_eq!(all.len(), 14);
    let rerun_ids: BTreeSet<&str> = all[10..].iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(rerun_ids.len(), 4);
    assert_eq!(
        all[10..].iter().map(|(_, f)| f).collect::<BTreeSet<_>>(),
        all[6..10].iter().map(|(_, f)| f).collect::<BTreeSet<_>>(),
        "same code and config: same fingerprints"
    );
}

// ---------------------------------------------------------------- results layout

#[test]
fn index_json_names_the_jobs_behind_every_array_and_curves_are_seeds_by_epochs() {
    let ws = TestWorkspace::new(
        "layout",
        &resubmission_config(0.25),
        &[("runfile.py", RUNFILE)],
    );
    ws.submit_here("full", &["--force", "--slots", "2"]);
    let events = ws.events_of("job_completed");
    assert_eq!(
        events.len(),
        2 * 2 * 3,
        "2 methods x 2 sweep points x 3 seeds"
    );
    let index = ws.read_json("experiment_results/index.json");

    for method in ["proposed", "baseline"] {
        for (point, epochs) in [(0usize, 2usize), (1, 4)] {
            let expected_jobs: BTreeMap<String, (u64, String)> = events
                .iter()
                .filter(|e| e["method"] == method && e["sweep_point"]["params.epochs"] == epochs)
                .map(|e| {
                    (
                        e["job_id"].as_str().unwrap().to_owned(),
                        (
                            e["seed"].as_u64().unwrap(),
                            e["fingerprint"].as_str().unwrap().to_owned(),
                        ),
                    )
                })
                .collect();
            assert_eq!(expected_jobs.len(), 3);
            for (array, kind) in [
                (
                    format!("full_{method}_p{point}_test_accuracy.npy"),
                    "final_per_seed",
                ),
                (
                    format!("full_{method}_p{point}_train_loss_curves.npy"),
                    "curves_seeds_by_step",
                ),
            ] {
                let entry = &index[&array];
                assert_eq!(entry["kind"], kind, "{array}: {entry}");
                assert_eq!(entry["variant"], method);
                assert_eq!(entry["stage"], "full");
                let listed: BTreeMap<String, (u64, String)> = entry["jobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|j| {
                        (
                            j["job_id"].as_str().unwrap().to_owned(),
                            (
                                j["seed"].as_u64().unwrap(),
                                j["fingerprint"].as_str().unwrap().to_owned(),
                            ),
                        )
                    })
                    .collect();
                assert_eq!(
                    listed, expected_jobs,
                    "{array} must name exactly the jobs it came from"
                );
                assert!(ws.path(&format!("experiment_results/{array}")).exists());
            }
            // Learning curves: [seeds, epochs], row i from the i-th seed.
            let curves = numpy_load(&ws.path(&format!(
                "experiment_results/full_{method}_p{point}_train_loss_curves.npy"
            )));
            assert_eq!(curves["shape"], serde_json::json!([3, epochs]));
            let want: Vec<f64> = (0..3)
                .flat_map(|seed| (0..epochs).map(move |e| 1.0 / (e as f64 + 1.0 + seed as f64)))
                .collect();
            assert_eq!(curves["values"], serde_json::json!(want));
            let finals = numpy_load(&ws.path(&format!(
                "experiment_results/full_{method}_p{point}_test_accuracy.npy"
            )));
            assert_eq!(finals["shape"], serde_json::json!([3]));
        }
    }
    // Each job's raw results are on record with their fingerprint.
    for event in &events {
        let stored = ws.job_results(event);
        assert_eq!(stored["fingerprint"], event["fingerprint"]);
        assert_eq!(stored["final_metrics"], event["metrics"]);
    }
}
