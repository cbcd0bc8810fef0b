//! Stage summaries, claims and the idea feedback protocol (issue 4), end to end: a
//! real coordinator and worker process run command jobs whose values the params
//! control, so the data decides each claim; every number of the written summaries is
//! checked against numpy/scipy computed here from the stored `.npy` arrays.

use expcluster_tests::{
    assert_success, expcluster, python, start_coordinator, start_worker, TestWorkspace,
};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Final test_accuracy = base * (1 + jitter[seed]); train_loss falls over 3 steps.
/// Scaling by the jitter keeps paired differences from being constant (a constant
/// difference has zero variance and no t-test).
/// `fail_seed` makes that seed's job exit non-zero (a failed seed).
const RUNFILE: &str = r#"
import json, os, sys
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
if seed == params["fail_seed"]:
    print("diverged", file=sys.stderr)
    sys.exit(1)
for step in range(3):
    print(f"train_loss: {params['loss'] / (step + 1) * (1 + params['jitter'][seed])}")
print(f"test_accuracy: {params['base'] * (1 + params['jitter'][seed])}")
"#;

const IDEA_MD: &str = "# claims\n\n## Hypothesis\nThe proposed method helps.\n\n## Claims\n- **beats-baseline** (open): The proposed method is more accurate than the baseline.\n";
const IDEA_JSON: &str = "{\"title\": \"claims\", \"version\": 1, \"last_updated\": \"2026-01-01T00:00:00Z\", \"update_reason\": \"initial idea\"}\n";
const EVOLUTION_MD: &str = "# Idea evolution: claims\n\n## Version 1\nInitial idea.\n";

/// A config where the proposed method scores `proposed_base` and the baseline
/// `baseline_base`; `flaky` fails for seed 2.
fn config(proposed_base: f64, baseline_base: f64) -> String {
    format!(
        "name: claims\nprimary_metric: {{name: test_accuracy, goal: max}}\nmetrics: [train_loss, test_accuracy]\n\
         job:\n  command: [python, runfile.py]\n  params: {{base: {proposed_base}, loss: 1.0, fail_seed: -1, jitter: [0.011, 0.032, 0.018, 0.047, 0.025]}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.base: {baseline_base}, params.jitter: [0.021, 0.012, 0.044, 0.031, 0.052]}}\n  \
         flaky: {{params.base: 0.6, params.fail_seed: 2}}\n\
         ablations:\n  no_bonus: {{params.base: 0.3, params.loss: 2.0}}\n\
         stages:\n  baselines: {{seeds: 5}}\n  full: {{seeds: 3, methods: [proposed, baseline], sweep: {{params.loss: [1.0, 0.5]}}}}\n  ablations: {{seeds: 4}}\n\
         claims:\n  - {{id: beats-baseline, better: proposed, than: baseline, metric: test_accuracy, statement: \"The proposed method is more accurate than the baseline.\"}}\n\
         resources: {{max_attempts: 1, timeout: 2m}}\n"
    )
}

fn workspace(name: &str, proposed_base: f64, baseline_base: f64) -> TestWorkspace {
    TestWorkspace::new(
        name,
        &config(proposed_base, baseline_base),
        &[
            ("runfile.py", RUNFILE),
            ("idea.md", IDEA_MD),
            ("idea.json", IDEA_JSON),
            ("idea_evolution.md", EVOLUTION_MD),
        ],
    )
}

fn submit(address: &str, stage: &str) -> String {
    let output = expcluster(&["submit", "--stage", stage, "--coordinator", address]);
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn run_ok(args: &[&str]) -> String {
    let output = expcluster(args);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_success(&output);
    text
}

/// Recomputes every statistic of a summary with numpy/scipy from the arrays it
/// names; prints the list of disagreements (empty when all agree to 1e-9).
const SCIPY_CHECK: &str = r#"
import json, sys, numpy as np
from scipy import stats, special
root, name = sys.argv[1], sys.argv[2]
s = json.load(open(f"{root}/{name}"))
errors, checked = [], [0]
def close(what, got, want, tol=1e-9):
    checked[0] += 1
    want = None if want is None or not np.isfinite(want) else float(want)
    if got is None or want is None:
        if got is not None or want is not None:
            errors.append(f"{what}: got {got}, want {want}")
        return
    if abs(got - want) > tol * max(1.0, abs(want)):
        errors.append(f"{what}: got {got!r}, want {want!r}")
def get(c, test, field):
    return (c[test] or {}).get(field)
arrays = {}
for run, metrics in s["methods"].items():
    seeds = s["runs"][run]["seeds"]
    for metric, st in metrics.items():
        v = np.load(f"{root}/{st['values_file']}")
        arrays[(run, metric)] = v
        f = v[np.isfinite(v)]
        w = f"{run}.{metric}"
        if st["n"] != len(f) or st["n_failed"] != len(v) - len(f) or len(v) != len(seeds):
            errors.append(f"{w}: n {st['n']}/{st['n_failed']} vs {len(f)}/{len(v) - len(f)}")
        if st["failed_seeds"] != [sd for sd, x in zip(seeds, v) if not np.isfinite(x)]:
            errors.append(f"{w}: failed_seeds {st['failed_seeds']}")
        close(w + ".mean", st["mean"], np.mean(f))
        close(w + ".min", st["min"], np.min(f)); close(w + ".max", st["max"], np.max(f))
        close(w + ".median", st["median"], np.median(f))
        close(w + ".std", st["std"], np.std(f, ddof=1)); close(w + ".se", st["se"], stats.sem(f))
        lo, hi = stats.t.interval(0.95, len(f) - 1, loc=np.mean(f), scale=stats.sem(f))
        close(w + ".ci95.low", st["ci95"][0], lo); close(w + ".ci95.high", st["ci95"][1], hi)
tests = s["statistical_tests"]["comparisons"]
for c in tests:
  try:
    a, b = arrays[(c["a"], c["metric"])], arrays[(c["b"], c["metric"])]
    fa, fb = a[np.isfinite(a)], b[np.isfinite(b)]
    w = f"{c['a']} vs {c['b']} on {c['metric']}"
    if [c["n_a"], c["n_failed_a"], c["n_b"], c["n_failed_b"]] != [len(fa), len(a) - len(fa), len(fb), len(b) - len(fb)]:
        errors.append(f"{w}: counts {c}")
    pooled = np.sqrt(((len(fa) - 1) * np.var(fa, ddof=1) + (len(fb) - 1) * np.var(fb, ddof=1)) / (len(fa) + len(fb) - 2))
    d = (np.mean(fa) - np.mean(fb)) / pooled
    df = len(fa) + len(fb) - 2
    close(w + " cohens_d", c["cohens_d"], d)
    close(w + " hedges_g", c["hedges_g"], d * np.exp(special.gammaln(df / 2) - np.log(np.sqrt(df / 2)) - special.gammaln((df - 1) / 2)))
    # One test per comparison, planned by the design (same seeds: paired t), and
    # the interval that test implies: scipy's confidence_interval() of the same test.
    method = c["planned_test"]
    if method != ("paired_t" if c["paired"] else "welch"): errors.append(f"{w}: planned {method}")
    if c["paired"]:
        m = np.isfinite(a) & np.isfinite(b)
        if c["n_pairs"] != int(m.sum()): errors.append(f"{w}: n_pairs {c['n_pairs']}")
        r = stats.ttest_rel(a[m], b[m]); diff = np.mean(a[m] - b[m])
    else:
        r = stats.ttest_ind(fa, fb, equal_var=False); diff = np.mean(fa) - np.mean(fb)
    close(w + " mean_diff", c["mean_diff"], diff)
    if c["p_value"] is None:
        # Undefined (zero variance, as scipy's NaN says): no interval, no stand-in test.
        if c["interval"] is not None or c["test"] is not None or np.isfinite(r.pvalue):
            errors.append(f"{w}: undefined test reported {c}")
        continue
    for other in ("welch", "paired_t", "mann_whitney"):
        if other != method and c[other] is not None: errors.append(f"{w}: {other} reported beside {method}")
    close(w + " t", get(c, method, "statistic"), r.statistic); close(w + " p", get(c, method, "pvalue"), r.pvalue)
    close(w + " df", get(c, method, "df"), r.df)
    close(w + " p_value", c["p_value"], r.pvalue)
    if c["test"] != method: errors.append(f"{w}: test {c['test']}")
    ci = r.confidence_interval(0.95)
    iv = c["interval"]
    if iv["method"] != ("paired_t" if c["paired"] else "welch_satterthwaite") or iv["confidence"] != 0.95:
        errors.append(f"{w}: interval {iv}")
    close(w + " ci low", iv["low"], ci.low); close(w + " ci high", iv["high"], ci.high)
    close(w + " ci95 low", c["mean_diff_ci95"][0], ci.low); close(w + " ci95 high", c["mean_diff_ci95"][1], ci.high)
    if (iv["low"] > 0 or iv["high"] < 0) != (c["p_value"] < 0.05):
        errors.append(f"{w}: interval {iv['low'], iv['high']} and p = {c['p_value']} disagree")
  except (TypeError, KeyError) as err:
    errors.append(f"{c['a']} vs {c['b']} on {c['metric']}: missing statistic ({err!r}): {c}")
# Holm-Bonferroni over the family, as statsmodels' multipletests(method='holm').
# Comparisons without a p-value are outside the family.
family = [i for i, c in enumerate(tests) if c["p_value"] is not None]
ps = [tests[i]["p_value"] for i in family]
order = np.argsort(ps, kind="stable"); running = 0.0
for rank, j in enumerate(order):
    running = max(running, ps[j] * (len(ps) - rank))
    close(f"holm {family[j]}", tests[family[j]]["p_holm"], min(running, 1.0))
for i, c in enumerate(tests):
    if c["p_value"] is None and c["p_holm"] is not None: errors.append(f"holm {i} without p")
if s["statistical_tests"]["family_size"] != len(ps): errors.append("family_size")
for run, metrics in s.get("learning_curves", {}).items():
    for metric, lc in metrics.items():
        curves = np.load(f"{root}/{lc['file']}")
        if list(curves.shape) != lc["shape"]: errors.append(f"{run}.{metric} curve shape")
        for step, value in enumerate(np.nanmean(curves, axis=0)):
            close(f"{run}.{metric} curve[{step}]", lc["mean"][step], value)
print(json.dumps({"errors": errors, "checked": checked[0]}))
"#;

/// Runs a check script with `args` and `stdin`; asserts it found no error among at
/// least `least` numbers checked.
fn run_check(script: &str, args: &[&std::ffi::OsStr], stdin: &[u8], least: u64, what: &str) {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", script])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().expect("python");
    assert_success(&output);
    let report: Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["errors"], serde_json::json!([]), "{what} disagrees");
    assert!(
        report["checked"].as_u64().unwrap() >= least,
        "too few numbers checked: {report}"
    );
}

/// Runs [`SCIPY_CHECK`] on a summary; asserts every number agrees.
fn assert_agrees_with_scipy(ws: &TestWorkspace, summary: &str) {
    let args = [ws.root.as_os_str(), std::ffi::OsStr::new(summary)];
    run_check(SCIPY_CHECK, &args, b"", 51, summary);
}

/// Recomputes each claim's evidence from the stored arrays: the interval at 1 - alpha
/// is scipy's `ttest_rel(...).confidence_interval()` (1e-9) and excludes 0 exactly when
/// p < alpha; the power figures are statsmodels' `TTestPower` at alpha / family (1e-6).
const CLAIM_CHECK: &str = r#"
import json, sys, numpy as np
from scipy import special, stats
from statsmodels.stats.power import TTestPower
root = sys.argv[1]
files = {"baselines": "baseline_summary.json", "full": "research_summary.json", "ablations": "ablation_summary.json"}
errors, checked = [], [0]
def close(what, got, want, tol):
    checked[0] += 1
    if got is None or want is None or not np.isfinite(want) or abs(got - want) > tol * max(1.0, abs(want)):
        errors.append(f"{what}: got {got!r}, want {want!r}")
for event in json.load(sys.stdin):
    s = json.load(open(f"{root}/{files[event['stage']]}"))
    alpha, metric = event["alpha"], event["metric"]
    for e in event["evidence"]:
        w = f"{event['claim']} in {event['stage']} ({e['better_run']} vs {e['than_run']})"
        load = lambda run: np.load(f"{root}/{s['methods'][run][metric]['values_file']}")
        x, y = load(e["better_run"]), load(e["than_run"])
        m = np.isfinite(x) & np.isfinite(y)
        d = x[m] - y[m]
        if e["planned_test"] != "paired_t" or e["n_pairs"] != int(m.sum()):
            errors.append(f"{w}: {e['planned_test']} on {e['n_pairs']} pairs")
        r = stats.ttest_rel(x[m], y[m])
        ci = r.confidence_interval(1 - alpha)
        iv = e["interval"]
        close(w + " p", e["p_value"], r.pvalue, 1e-9)
        close(w + " interval low", iv["low"], ci.low, 1e-9)
        close(w + " interval high", iv["high"], ci.high, 1e-9)
        if iv["confidence"] != 1 - alpha or (iv["low"] > 0 or iv["high"] < 0) != (r.pvalue < alpha):
            errors.append(f"{w}: interval {iv} vs p = {r.pvalue}")
        pw, tool, n = e["power"], TTestPower(), len(d)
        level = alpha / e["family_size"]
        close(w + " power alpha", pw["alpha"], level, 1e-12)
        close(w + " d_z", pw["observed_effect"], np.mean(d) / np.std(d, ddof=1), 1e-9)
        want = tool.power(pw["observed_effect"], n, level)
        if not np.isfinite(want):
            # statsmodels' power is NaN far out in the noncentral t's tail (a large
            # effect): scipy's nctdtr gives the upper tail there, the lower is ~0.
            nc = abs(pw["observed_effect"]) * np.sqrt(n)
            want = 1 - special.nctdtr(n - 1, nc, stats.t.isf(level / 2, n - 1))
        close(w + " power", pw["power_at_observed"], want, 1e-6)
        close(w + " detectable", tool.power(pw["detectable_effect"], n, level), 0.8, 1e-6)
        close(w + " detectable difference", pw["detectable_difference"], pw["detectable_effect"] * np.std(d, ddof=1), 1e-9)
        if pw["nobs_needed"] > 2:
            close(w + " seeds needed", tool.power(pw["observed_effect"], pw["nobs_needed"], level), 0.8, 1e-6)
        if pw["seeds_needed"] != int(np.ceil(pw["nobs_needed"] - 1e-9)):
            errors.append(f"{w}: seeds_needed {pw}")
print(json.dumps({"errors": errors, "checked": checked[0]}))
"#;

/// Runs [`CLAIM_CHECK`] on every `hypothesis_evaluated` event and checks that each
/// sentence names its test, its interval and its seeds.
fn assert_claims_agree(ws: &TestWorkspace) {
    let events = ws.events_of("hypothesis_evaluated");
    for event in &events {
        let summary = event["summary"].as_str().unwrap();
        for expected in ["paired t-test p = ", "(paired t interval)", " pairs, "] {
            assert!(summary.contains(expected), "{expected:?} not in {summary}");
        }
    }
    let events = serde_json::to_vec(&events).unwrap();
    run_check(
        CLAIM_CHECK,
        &[ws.root.as_os_str()],
        &events,
        8,
        "claim evidence",
    );
}

#[test]
fn a_contradicted_claim_updates_the_idea_and_later_stages_carry_the_new_version() {
    // The baseline is 0.3 more accurate: the data contradicts `beats-baseline`.
    let ws = workspace("contradicted", 0.5, 0.8);
    let (mut coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 2, scratch.path());
    let output = submit(&address, "baselines");
    assert!(output.contains("flaky"), "{output}");

    let evaluated = ws.events_of("hypothesis_evaluated");
    assert_eq!(evaluated.len(), 1, "{evaluated:?}");
    let verdict = &evaluated[0];
    assert_eq!(verdict["claim"], "beats-baseline");
    assert_eq!(verdict["status"], "contradicted", "{verdict}");
    assert_eq!(
        verdict["idea_version"], 1,
        "evaluated under the version the stage ran with"
    );
    let evidence = &verdict["evidence"][0];
    assert!(
        evidence["mean_diff"].as_f64().unwrap() < -0.25,
        "{evidence}"
    );
    assert!(evidence["p_holm"].as_f64().unwrap() < 0.05, "{evidence}");

    // The protocol: version 2 with a reason, the claim marked with its evidence, an
    // evolution entry citing the log events, an idea_updated event.
    let idea = ws.read_json("idea.json");
    assert_eq!(idea["version"], 2);
    assert!(
        idea["update_reason"]
            .as_str()
            .unwrap()
            .contains("beats-baseline"),
        "{idea}"
    );
    assert_eq!(
        idea["claim_status"]["beats-baseline"]["status"],
        "contradicted"
    );
    let idea_md = std::fs::read_to_string(ws.path("idea.md")).unwrap();
    assert!(
        idea_md.contains(
            "- **beats-baseline** (contradicted in v2): The proposed method is more accurate"
        ),
        "{idea_md}"
    );
    assert!(
        idea_md.contains(&format!("research_log.jsonl event #{}", verdict["seq"])),
        "{idea_md}"
    );
    let evolution = std::fs::read_to_string(ws.path("idea_evolution.md")).unwrap();
    assert!(
        evolution.starts_with(EVOLUTION_MD),
        "earlier history kept: {evolution}"
    );
    assert!(evolution.contains("## Version 2"), "{evolution}");
    let completed = ws.events_of("experiment_completed");
    assert!(
        evolution.contains(&format!("#{}, #{}", completed[0]["seq"], verdict["seq"])),
        "cites the log events: {evolution}"
    );
    let updated = ws.events_of("idea_updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["idea_version"], 2);
    assert_eq!(updated[0]["from_version"], 1);
    assert_eq!(updated[0]["claims"], serde_json::json!(["beats-baseline"]));

    // The next stage runs against version 2; the claim, already recorded as
    // contradicted, does not bump the version again.
    submit(&address, "full");
    let last_update = updated[0]["seq"].as_u64().unwrap();
    let later: Vec<Value> = ws
        .events()
        .into_iter()
        .filter(|e| e["seq"].as_u64().unwrap() > last_update)
        .collect();
    assert!(later
        .iter()
        .any(|e| e["type"] == "stage_started" && e["stage"] == "full"));
    for event in &later {
        assert_eq!(event["idea_version"], 2, "{event}");
    }
    assert_eq!(ws.read_json("idea.json")["version"], 2);
    assert_agrees_with_scipy(&ws, "research_summary.json");

    // Failed seeds are counted in every table of the summary.
    let summary = ws.read_json("baseline_summary.json");
    for metric in ["test_accuracy", "train_loss"] {
        let flaky = &summary["methods"]["flaky"][metric];
        assert_eq!(
            (flaky["n"].as_u64(), flaky["n_failed"].as_u64()),
            (Some(4), Some(1)),
            "{flaky}"
        );
        assert_eq!(flaky["failed_seeds"], serde_json::json!([2]));
    }
    let tests = summary["statistical_tests"]["comparisons"]
        .as_array()
        .unwrap();
    assert_eq!(
        tests.len(),
        4,
        "2 methods x 2 metrics against the proposed one"
    );
    for test in tests.iter().filter(|t| t["b"] == "flaky") {
        assert_eq!(
            (test["n_failed_b"].as_u64(), test["n_pairs"].as_u64()),
            (Some(1), Some(4)),
            "{test}"
        );
    }
    assert_eq!(summary["best_method"], "baseline");
    assert!(
        summary["analysis"]
            .as_str()
            .unwrap()
            .contains("1 of 15 seed(s) have no finite test_accuracy"),
        "{}",
        summary["analysis"]
    );
    assert_agrees_with_scipy(&ws, "baseline_summary.json");
    assert_claims_agree(&ws);

    // summarize refuses while the coordinator holds the workspace, then reproduces
    // the file byte for byte once it is gone.
    let refused = expcluster(&[
        "summarize",
        "--stage",
        "baselines",
        "--workspace",
        ws.root.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    coordinator.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        coordinator.wait_exit(Duration::from_secs(30)).is_some(),
        "coordinator stops on SIGTERM"
    );
    for (stage, file) in [
        ("baselines", "baseline_summary.json"),
        ("full", "research_summary.json"),
    ] {
        let stored = std::fs::read(ws.path(file)).unwrap();
        std::fs::remove_file(ws.path(file)).unwrap();
        let said = run_ok(&[
            "summarize",
            "--stage",
            stage,
            "--workspace",
            ws.root.to_str().unwrap(),
        ]);
        assert!(said.contains(file), "{said}");
        assert_eq!(
            std::fs::read(ws.path(file)).unwrap(),
            stored,
            "summarize reproduces {file}"
        );
        let again = run_ok(&[
            "summarize",
            "--stage",
            stage,
            "--workspace",
            ws.root.to_str().unwrap(),
        ]);
        assert!(again.contains("identical to the stored file"), "{again}");
    }
    let history = run_ok(&["idea", "log", "--workspace", ws.root.to_str().unwrap()]);
    assert!(
        history.contains("beats-baseline") && history.contains("current version: 2"),
        "{history}"
    );
}

#[test]
fn a_supported_claim_leaves_the_idea_alone_and_ablations_report_their_impact() {
    let ws = workspace("supported", 0.8, 0.5);
    let (_coordinator, address) = start_coordinator(&ws.root, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let _worker = start_worker(&address, 2, scratch.path());
    submit(&address, "baselines");
    submit(&address, "ablations");

    let evaluated = ws.events_of("hypothesis_evaluated");
    assert_eq!(
        evaluated.len(),
        1,
        "only the baselines stage ran both sides"
    );
    assert_eq!(evaluated[0]["status"], "supported", "{}", evaluated[0]);
    assert!(ws.events_of("idea_updated").is_empty());
    assert_eq!(ws.read_json("idea.json")["version"], 1);
    assert_eq!(
        std::fs::read_to_string(ws.path("idea.md")).unwrap(),
        IDEA_MD
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("idea_evolution.md")).unwrap(),
        EVOLUTION_MD
    );
    for event in ws.events() {
        assert_eq!(event["idea_version"], 1, "{event}");
    }

    let ablations = ws.read_json("ablation_summary.json");
    let entry = &ablations["ablations"][0];
    assert_eq!(entry["name"], "no_bonus");
    assert_eq!(
        entry["change"],
        "params.base: 0.8 → 0.3; params.loss: 1.0 → 2.0"
    );
    let impact = &entry["impact"]["test_accuracy"];
    assert_eq!(impact["direction"], "worse", "{impact}");
    assert!(impact["difference"].as_f64().unwrap() < -0.5, "{impact}");
    assert_eq!(
        entry["impact"]["train_loss"]["direction"], "worse",
        "a higher loss is worse"
    );
    assert!(
        entry["conclusion"]
            .as_str()
            .unwrap()
            .contains("the component matters"),
        "{entry}"
    );
    assert!(ablations["analysis"]
        .as_str()
        .unwrap()
        .starts_with("The most critical component is the one removed by no_bonus"));
    assert_agrees_with_scipy(&ws, "ablation_summary.json");
    assert_claims_agree(&ws);
}

#[test]
fn a_researcher_update_goes_through_the_same_protocol_with_the_diff() {
    let ws = workspace("researcher", 0.8, 0.5);
    let new_idea = ws.path("new_idea.md");
    std::fs::write(
        &new_idea,
        IDEA_MD.replace(
            "The proposed method helps.",
            "The proposed method helps on small data.",
        ),
    )
    .unwrap();
    let root = ws.root.to_str().unwrap();

    // Refused while a coordinator serves the workspace.
    let coordinator = start_coordinator(&ws.root, &[]);
    let refused = expcluster(&[
        "idea",
        "update",
        "--workspace",
        root,
        "--reason",
        "narrow",
        "--from",
        new_idea.to_str().unwrap(),
    ]);
    assert!(
        !refused.status.success(),
        "idea update must not run beside a coordinator"
    );
    assert_eq!(ws.read_json("idea.json")["version"], 1);
    drop(coordinator);

    let said = run_ok(&[
        "idea",
        "update",
        "--workspace",
        root,
        "--reason",
        "narrow the hypothesis to small data",
        "--from",
        new_idea.to_str().unwrap(),
    ]);
    assert!(said.contains("version 1 → 2"), "{said}");
    assert!(
        said.contains("+The proposed method helps on small data."),
        "{said}"
    );
    let idea = ws.read_json("idea.json");
    assert_eq!(
        (idea["version"].as_u64(), idea["update_reason"].as_str()),
        (Some(2), Some("narrow the hypothesis to small data"))
    );
    assert!(std::fs::read_to_string(ws.path("idea.md"))
        .unwrap()
        .contains("helps on small data"));
    let updated = ws.events_of("idea_updated");
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["idea_version"], 2);
    assert!(updated[0]["diff"]
        .as_str()
        .unwrap()
        .contains("-The proposed method helps.\n+The proposed method helps on small data.\n"));
    let evolution = std::fs::read_to_string(ws.path("idea_evolution.md")).unwrap();
    assert!(
        evolution.contains("## Version 2") && evolution.contains("```diff"),
        "{evolution}"
    );

    // An in-place edit is diffed against the snapshot of version 2.
    std::fs::write(
        ws.path("idea.md"),
        IDEA_MD.replace("helps.", "helps a lot."),
    )
    .unwrap();
    run_ok(&[
        "idea",
        "update",
        "--workspace",
        root,
        "--reason",
        "stronger wording",
    ]);
    let updated = ws.events_of("idea_updated");
    assert_eq!(updated[1]["to_version"], 3);
    assert!(
        updated[1]["diff"].as_str().unwrap().contains(
            "-The proposed method helps on small data.\n+The proposed method helps a lot.\n"
        ),
        "{}",
        updated[1]["diff"]
    );
    let history = run_ok(&["idea", "log", "--workspace", root]);
    assert!(
        history.contains("stronger wording") && history.contains("current version: 3"),
        "{history}"
    );
}
