//! A claim's second look on more seeds (issue 21): a stage declares a two-look
//! O'Brien–Fleming design (`sequential: {max_seeds: 8}` after 4 seeds); its first look
//! is judged at nominal alpha 0.0052, `expcluster submit --seeds-for-power` runs the
//! declared 8 seeds (reusing the first 4) and the claim is judged again at 0.0480 with
//! the sequential p-value; raising `seeds` by hand, and a third look, are refused. Real
//! embedded coordinators (one per submit, so each look is judged by a coordinator that
//! rebuilt its state from the research log) and real command jobs; every number is
//! recomputed with scipy from the stored arrays.

use expcluster_tests::{assert_success, expcluster, python, TestWorkspace};
use serde_json::Value;
use std::process::Command;

/// test_accuracy = base * (1 + jitter[seed]).
const RUNFILE: &str = r#"
import json, os
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
print(f"test_accuracy: {params['base'] * (1 + params['jitter'][seed])}")
"#;

/// The proposed method is 0.03 better: on the first 4 seeds the paired p is 0.0396
/// (below 0.05: a single look would call the claim supported, an O'Brien–Fleming first
/// look does not), on all 8 it is 0.0007.
fn config(seeds: u32) -> String {
    format!(
        "name: looks\nprimary_metric: {{name: test_accuracy, goal: max}}\nmetrics: [test_accuracy]\n\
         job:\n  command: [python, runfile.py]\n  params: {{base: 0.82, jitter: [0.011, 0.032, 0.018, 0.047, 0.025, 0.014, 0.029, 0.036]}}\n\
         methods:\n  proposed: {{}}\n  baseline: {{params.base: 0.79, params.jitter: [0.021, 0.012, 0.044, 0.031, 0.052, 0.008, 0.027, 0.040]}}\n\
         stages:\n  baselines: {{seeds: {seeds}, sequential: {{max_seeds: 8}}}}\n\
         claims:\n  - {{id: helps, better: proposed, than: baseline, metric: test_accuracy}}\n\
         resources: {{max_attempts: 1, timeout: 2m}}\n"
    )
}

fn submit_fails(ws: &TestWorkspace, extra: &[&str]) -> String {
    let root = ws.root.to_str().unwrap();
    let mut args = vec!["submit", "--stage", "baselines", "--workspace", root];
    args.extend_from_slice(extra);
    let output = expcluster(&args);
    assert!(!output.status.success(), "the submission must be refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Recomputes the second look from the arrays: the paired t p-values of the first 4
/// and of all 8 seeds (scipy ttest_rel), and the sequential p-value of the
/// O'Brien–Fleming design at t = 1/2 from scipy's quad of the bivariate normal.
const CHECK: &str = r#"
import json, math, sys, numpy as np
from scipy import integrate, stats
root, event = sys.argv[1], json.load(sys.stdin)
s = json.load(open(f"{root}/baseline_summary.json"))
load = lambda run: np.load(f"{root}/{s['methods'][run]['test_accuracy']['values_file']}")
a, b = load("proposed"), load("baseline")
e = event["evidence"][0]
def box(c1, c2, rho):
    w = math.sqrt(1 - rho * rho)
    f = lambda z: stats.norm.pdf(z) * (stats.norm.sf((-c2 - rho * z) / w) - stats.norm.sf((c2 - rho * z) / w))
    return integrate.quad(f, -c1, c1, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
t = 0.5
alpha_at = lambda C: 1 - box(C / math.sqrt(t), C, math.sqrt(t))
p1, p2 = stats.ttest_rel(a[:4], b[:4]).pvalue, stats.ttest_rel(a, b).pvalue
seq = min(alpha_at(stats.norm.isf(p1 / 2) * math.sqrt(t)), alpha_at(stats.norm.isf(p2 / 2)))
print(json.dumps({"n": len(a), "p_first": p1, "p_all": p2, "sequential_p": seq,
                  "errors": [f"{k}: {x} vs {y}" for k, x, y in [
                      ("p_first_look", e["sequential"]["p_first_look"], p1),
                      ("p_value", e["p_value"], p2),
                      ("sequential_p", e["sequential"]["sequential_p"], seq),
                      ("p_holm", e["p_holm"], seq)] if abs(x - y) > 1e-8 * max(1, abs(y))]}))
"#;

fn recompute(ws: &TestWorkspace, event: &Value) -> Value {
    use std::io::Write;
    let mut child = Command::new(python())
        .args(["-c", CHECK])
        .arg(&ws.root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(event).unwrap())
        .unwrap();
    let output = child.wait_with_output().expect("python");
    serde_json::from_str(&assert_success(&output)).expect("json")
}

#[test]
fn a_second_look_adds_the_declared_seeds_and_judges_at_the_adjusted_level() {
    let ws = TestWorkspace::new("looks", &config(4), &[("runfile.py", RUNFILE)]);
    ws.submit_here("baselines", &[]);
    let first = ws.events_of("hypothesis_evaluated");
    assert_eq!(first.len(), 1);
    let first = &first[0];
    assert_eq!(first["status"], "inconclusive", "{first}");
    let p_first = first["evidence"][0]["p_value"].as_f64().unwrap();
    assert!(
        (p_first - 0.0396).abs() < 1e-4,
        "below 0.05, above the first look's level: {p_first}"
    );
    let summary = first["summary"].as_str().unwrap();
    for expected in [
        "look 1 of 2 (O'Brien–Fleming, 4 then 8 seeds): nominal alpha 0.0052 at this look, 0.0480 at look 2",
        "--seeds-for-power`) runs 8 seeds",
    ] {
        assert!(summary.contains(expected), "{expected:?} not in {summary}");
    }
    assert_eq!(first["sequential"]["look"], 1);

    // More seeds by editing `seeds` after the look: refused.
    std::fs::write(ws.path("config.yaml"), config(6)).unwrap();
    let refused = submit_fails(&ws, &[]);
    assert!(
        refused.contains("were judged at a first look of 4 seeds"),
        "{refused}"
    );
    std::fs::write(ws.path("config.yaml"), config(4)).unwrap();

    // The declared second look.
    let said = ws.submit_here("baselines", &["--seeds-for-power"]);
    assert!(
        said.contains("look 2 of 2 for stage baselines: seeds 4 → 8")
            && said.contains("nominal alpha 0.0480 (the first look's was 0.0052)")
            && said.contains("16 job(s), 8 already done"),
        "{said}"
    );
    let added = ws.events_of("stage_seeds_added");
    assert_eq!(added.len(), 1);
    assert_eq!(
        (&added[0]["seeds_first_look"], &added[0]["max_seeds"]),
        (&Value::from(4), &Value::from(8))
    );
    let evaluated = ws.events_of("hypothesis_evaluated");
    assert_eq!(evaluated.len(), 2);
    let second = &evaluated[1];
    assert_eq!(second["status"], "supported", "{second}");
    assert_eq!(second["sequential"]["look"], 2);
    let level = second["sequential"]["nominal_alpha_this_look"]
        .as_f64()
        .unwrap();
    assert!((level - 0.0480).abs() < 5e-5, "{level}");
    let summary = second["summary"].as_str().unwrap();
    assert!(
        summary.contains("look 2 of 2 (O'Brien–Fleming, 4 then 8 seeds): nominal alpha 0.0480 at this look, 0.0052 at look 1 (p there 0.0396); sequential p = "),
        "{summary}"
    );
    let check = recompute(&ws, second);
    assert_eq!(check["errors"], serde_json::json!([]), "{check}");
    assert_eq!(check["n"], 8, "{check}");

    // No third look; a plain submission stays at the second look, all reused.
    let third = submit_fails(&ws, &["--seeds-for-power"]);
    assert!(
        third.contains("already had its second and last look"),
        "{third}"
    );
    let again = ws.submit_here("baselines", &[]);
    assert!(again.contains("16 job(s), 16 already done"), "{again}");
    let evaluated = ws.events_of("hypothesis_evaluated");
    assert_eq!(evaluated[2]["sequential"]["look"], 2);
    assert_eq!(
        evaluated[2]["evidence"][0]["p_holm"],
        second["evidence"][0]["p_holm"]
    );

    // summarize expands the second look's 8 seeds again and reproduces the file.
    let stored = std::fs::read(ws.path("baseline_summary.json")).unwrap();
    std::fs::remove_file(ws.path("baseline_summary.json")).unwrap();
    assert_success(&expcluster(&[
        "summarize",
        "--stage",
        "baselines",
        "--workspace",
        ws.root.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(ws.path("baseline_summary.json")).unwrap(),
        stored
    );
}
