//! A claim's evidence across stages (issue 21), end to end with real embedded
//! coordinators and command jobs: the baselines stage supports the claim on seeds 0–3;
//! the full stage runs seeds 4–7 at two sweep points, one the same experiment as the
//! baselines stage (pooled over seeds 0–7, recomputed here with scipy) and one where
//! the proposed method loses (reported separately, with the reason). The full stage
//! contradicts the claim: the verdict is flagged as conflicting with the baselines
//! stage's in the research log, the sentence, the idea's update and report.md, and the
//! baselines verdict stays as it was.

use expcluster_tests::{assert_success, expcluster, python, TestWorkspace};
use serde_json::{json, Value};
use std::process::Command;

/// test_accuracy = base * (1 + jitter[seed]), plus `bonus` for the proposed method.
const RUNFILE: &str = r#"
import json, os
params = json.loads(os.environ["EXP_CONFIG"])["params"]
seed = int(os.environ["EXP_SEED"])
bonus = params["bonus"] if os.environ["EXP_METHOD"] == "proposed" else 0.0
print(f"test_accuracy: {params['base'] * (1 + params['jitter'][seed]) + bonus}")
"#;

const CONFIG: &str = "name: across\nprimary_metric: {name: test_accuracy, goal: max}\nmetrics: [test_accuracy]\n\
    job:\n  command: [python, runfile.py]\n  params: {base: 0.8, bonus: 0.03, jitter: [0.011, 0.032, 0.018, 0.047, 0.025, 0.014, 0.029, 0.036]}\n\
    methods:\n  proposed: {}\n  baseline: {params.jitter: [0.021, 0.012, 0.044, 0.031, 0.052, 0.008, 0.027, 0.040]}\n\
    stages:\n  baselines: {seeds: 4}\n  full: {seeds: 4, seed_base: 4, sweep: {params.bonus: [0.03, -0.05]}}\n\
    claims:\n  - {id: helps, better: proposed, than: baseline, metric: test_accuracy, statement: \"The proposed method is more accurate.\"}\n\
    resources: {max_attempts: 1, timeout: 2m}\n";

const IDEA_MD: &str =
    "# across\n\n## Claims\n- **helps** (open): The proposed method is more accurate.\n";
const IDEA_JSON: &str = "{\"title\": \"across\", \"version\": 1, \"last_updated\": \"2026-01-01T00:00:00Z\", \"update_reason\": \"initial idea\"}\n";

/// The pooled paired t-test of the first sweep point with the baselines stage, from
/// the stored arrays of both stages.
const CHECK: &str = r#"
import json, sys, numpy as np
from scipy import stats
root = sys.argv[1]
load = lambda summary, run: np.load(f"{root}/{json.load(open(f'{root}/{summary}'))['methods'][run]['test_accuracy']['values_file']}")
a = np.concatenate([load("baseline_summary.json", "proposed"), load("research_summary.json", "proposed_p0")])
b = np.concatenate([load("baseline_summary.json", "baseline"), load("research_summary.json", "baseline_p0")])
r = stats.ttest_rel(a, b)
ci = r.confidence_interval(0.95)
print(json.dumps({"n": len(a), "p": r.pvalue, "low": ci.low, "high": ci.high, "diff": float(np.mean(a - b))}))
"#;

#[test]
fn a_claim_is_pooled_across_matching_stages_and_opposite_verdicts_are_flagged() {
    let ws = TestWorkspace::new(
        "across",
        CONFIG,
        &[
            ("runfile.py", RUNFILE),
            ("idea.md", IDEA_MD),
            ("idea.json", IDEA_JSON),
        ],
    );
    ws.submit_here("baselines", &[]);
    ws.submit_here("full", &[]);
    let evaluated = ws.events_of("hypothesis_evaluated");
    assert_eq!(evaluated.len(), 2, "{evaluated:?}");
    let (baselines, full) = (&evaluated[0], &evaluated[1]);
    assert_eq!(baselines["status"], "supported", "{}", baselines["summary"]);
    assert_eq!(baselines["evidence"][0]["across_stages"], json!([]));
    assert_eq!(
        baselines["evidence"][0]["data"]["better"]["seeds"],
        json!([0, 1, 2, 3])
    );

    // The full stage's first sweep point ran what the baselines stage ran: pooled.
    let pooled = &full["evidence"][0]["across_stages"][0];
    assert_eq!(pooled["pooled"], true, "{pooled}");
    assert_eq!(
        (&pooled["stage"], &pooled["event"]),
        (&json!("baselines"), &baselines["seq"])
    );
    assert_eq!(pooled["seeds"], json!([0, 1, 2, 3, 4, 5, 6, 7]));
    assert_eq!(pooled["shared_seeds"], json!([]));
    let output = Command::new(python())
        .args(["-c", CHECK])
        .arg(&ws.root)
        .output()
        .expect("python");
    let scipy: Value = serde_json::from_str(&assert_success(&output)).unwrap();
    assert_eq!(scipy["n"], 8);
    for (ours, theirs) in [
        (&pooled["p_value"], &scipy["p"]),
        (&pooled["mean_diff"], &scipy["diff"]),
        (&pooled["interval"]["low"], &scipy["low"]),
        (&pooled["interval"]["high"], &scipy["high"]),
    ] {
        let (ours, theirs) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!((ours - theirs).abs() < 1e-9, "{ours} vs scipy {theirs}");
    }
    assert_eq!(pooled["status"], "supported", "{pooled}");

    // The second sweep point ran something else: reported separately, with the reason.
    let apart = &full["evidence"][1]["across_stages"][0];
    assert_eq!(apart["pooled"], false, "{apart}");
    assert_eq!(
        apart["reason"],
        "both methods' job definitions differ between the stages"
    );

    // The full stage contradicts the claim at that point: flagged, both verdicts kept.
    assert_eq!(full["status"], "contradicted", "{}", full["summary"]);
    assert_eq!(
        full["conflicts"],
        json!([{"stage": "baselines", "stage_run": baselines["stage_run"], "status": "supported", "event": baselines["seq"]}])
    );
    let summary = full["summary"].as_str().unwrap();
    for expected in [
        "pooled with the baselines stage (run 1, supported there) (same job definitions and code)",
        "n = 8 pairs over seeds 0–7) is supported",
        "not pooled with the baselines stage (run 1, supported there): both methods' job definitions differ",
        &format!("CONFLICT: contradicted here but supported in the baselines stage (run 1, research_log.jsonl event #{}); both verdicts stand", baselines["seq"]),
    ] {
        assert!(summary.contains(expected), "{expected:?} not in {summary}");
    }
    assert_eq!(ws.events_of("hypothesis_evaluated")[0], *baselines);
    let evolution = std::fs::read_to_string(ws.path("idea_evolution.md")).unwrap();
    assert!(
        evolution.contains("CONFLICT: contradicted here"),
        "{evolution}"
    );

    assert_success(&expcluster(&[
        "report",
        "--workspace",
        ws.root.to_str().unwrap(),
    ]));
    let report = std::fs::read_to_string(ws.path("report.md")).unwrap();
    assert!(
        report.contains("| **contradicted** (CONFLICT: supported in baselines) |"),
        "{report}"
    );
}
