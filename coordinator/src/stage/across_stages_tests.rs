//! Evidence across stages on hand-made groups: a claim judged in one stage, its
//! `hypothesis_evaluated` event read back by the next stage, pooled when both stages
//! ran the same configurations, reported separately (with the reason) when not, and
//! conflicting verdicts flagged.

use super::{conflicts, other_stage_verdicts, seed_ranges};
use crate::stage::claims::tests::group_at;
use crate::stage::claims::{evaluate, ClaimEvaluation, StageContext};
use crate::stage::summary::analysis::analyse_groups;
use expcluster_core::config::{ExperimentConfig, LoadedConfig};
use expcluster_core::Stage;
use expcluster_stats::{compare, TestMethod};
use serde_json::{json, Value};
use std::path::Path;

fn config() -> LoadedConfig {
    let text = "name: t\nprimary_metric: {name: acc, goal: max}\nmetrics: [acc]\n\
         job: {command: [python, run.py]}\n\
         methods: {proposed: {}, baseline: {}}\n\
         stages: {baselines: {seeds: 4}, full: {seeds: 4, seed_base: 4}}\n\
         claims:\n  - {id: helps, better: proposed, than: baseline, metric: acc}\n";
    ExperimentConfig::parse(text, Path::new("config.yaml")).expect("valid config")
}

/// The claim judged on `stage` with (proposed, baseline) values at `seeds`, after the
/// `earlier` events; `baseline_job` is the baseline's resolved job.
fn judge(
    stage: Stage,
    seeds: &[u64],
    (proposed, baseline): (&[f64], &[f64]),
    baseline_job: Value,
    (code, earlier): (&str, &[Value]),
) -> ClaimEvaluation {
    let loaded = config();
    let analysis = analyse_groups(
        &loaded,
        stage,
        vec!["acc".into()],
        vec![
            group_at("proposed", json!({"lr": 0.1}), seeds, proposed),
            group_at("baseline", baseline_job, seeds, baseline),
        ],
    );
    let context = StageContext {
        look: None,
        code_digest: code,
        earlier,
    };
    evaluate(&loaded, &analysis, &context)
        .pop()
        .expect("judged")
}

/// The research log's event for an evaluation, as the coordinator writes it.
fn logged(evaluation: &ClaimEvaluation, stage: Stage, seq: u64, code: &str) -> Value {
    let mut event = json!({
        "type": "hypothesis_evaluated", "seq": seq, "stage": stage, "stage_run": seq,
        "claim": evaluation.claim.id, "status": evaluation.status, "code_digest": code,
        "evidence": evaluation.evidence,
    });
    event["summary"] = json!(evaluation.summary);
    event
}

/// The baselines stage's verdict on seeds 0–3, as the research log's event #7.
fn baselines_logged() -> Vec<Value> {
    let first = judge(
        Stage::Baselines,
        &[0, 1, 2, 3],
        (&BASE_PROPOSED, &BASE_BASELINE),
        json!({"lr": 0.2}),
        ("code", &[]),
    );
    vec![logged(&first, Stage::Baselines, 7, "code")]
}

/// The full stage's verdict on seeds 4–7 after `earlier`.
fn full_after(baseline_job: Value, code: &str, earlier: &[Value]) -> ClaimEvaluation {
    judge(
        Stage::Full,
        &[4, 5, 6, 7],
        (&FULL_PROPOSED, &FULL_BASELINE),
        baseline_job,
        (code, earlier),
    )
}

const BASE_PROPOSED: [f64; 4] = [0.83, 0.84, 0.80, 0.86];
const BASE_BASELINE: [f64; 4] = [0.80, 0.82, 0.81, 0.82];
const FULL_PROPOSED: [f64; 4] = [0.85, 0.82, 0.84, 0.83];
const FULL_BASELINE: [f64; 4] = [0.81, 0.80, 0.83, 0.80];

#[test]
fn the_same_configurations_in_two_stages_are_pooled_over_all_their_seeds() {
    let earlier = baselines_logged();
    assert!(earlier[0]["evidence"][0]["across_stages"]
        .as_array()
        .is_some_and(Vec::is_empty));
    let second = full_after(json!({"lr": 0.2}), "code", &earlier);
    let across = &second.evidence[0]["across_stages"][0];
    assert_eq!(across["pooled"], true, "{across}");
    assert_eq!(across["stage"], "baselines");
    assert_eq!(across["event"], 7);
    assert_eq!(across["seeds"], json!([0, 1, 2, 3, 4, 5, 6, 7]));
    // The pooled test is the paired t-test on the 8 seeds together.
    let a: Vec<f64> = BASE_PROPOSED
        .iter()
        .chain(&FULL_PROPOSED)
        .copied()
        .collect();
    let b: Vec<f64> = BASE_BASELINE
        .iter()
        .chain(&FULL_BASELINE)
        .copied()
        .collect();
    let expected = compare(&a, &b, TestMethod::PairedT, 0.95).expect("compare");
    assert_eq!(across["p_value"].as_f64(), expected.p_value);
    assert_eq!(
        across["p_holm"].as_f64(),
        expected.p_value,
        "one pooled test"
    );
    assert_eq!(
        across["interval"]["low"].as_f64(),
        expected.interval.map(|i| i.low)
    );
    assert_eq!(across["n_pairs"], 8);
    assert!(
        second
            .summary
            .contains("pooled with the baselines stage (run 7, ")
            && second.summary.contains("n = 8 pairs over seeds 0–7)"),
        "{}",
        second.summary
    );
}

#[test]
fn a_seed_run_in_both_stages_counts_once_and_other_configurations_are_kept_apart() {
    let earlier = baselines_logged();
    // Seeds 2 and 3 again: seed 2 with the same values, seed 3 with others (a job
    // that is not deterministic).
    let proposed = [0.80, 0.85, 0.82, 0.84];
    let again = judge(
        Stage::Full,
        &[2, 3, 4, 5],
        (&proposed, &FULL_BASELINE),
        json!({"lr": 0.2}),
        ("code", &earlier),
    );
    let across = &again.evidence[0]["across_stages"][0];
    assert_eq!(across["seeds"], json!([0, 1, 2, 3, 4, 5]), "{across}");
    assert_eq!(across["shared_seeds"], json!([2, 3]));
    assert_eq!(across["differing_seeds"], json!([3]));
    assert!(
        again
            .summary
            .contains("2 seeds run in both stages counted once (seed 3 gave other values there"),
        "{}",
        again.summary
    );

    // Another baseline job, or other code: reported separately, with the reason.
    let other_job = full_after(json!({"lr": 0.3}), "code", &earlier);
    let across = &other_job.evidence[0]["across_stages"][0];
    assert_eq!(across["pooled"], false);
    assert_eq!(
        across["reason"],
        "the other method's job definition differs between the stages"
    );
    assert!(
        other_job.summary.contains(
            "; not pooled with the baselines stage (run 7, inconclusive there): the other method's job definition differs"
        ),
        "{}",
        other_job.summary
    );
    let other_code = full_after(json!({"lr": 0.2}), "new code", &earlier);
    assert_eq!(
        other_code.evidence[0]["across_stages"][0]["reason"],
        "the code changed between the stages"
    );
}

#[test]
fn opposite_verdicts_in_two_stages_are_flagged_and_both_stand() {
    let supported = judge(
        Stage::Baselines,
        &[0, 1, 2, 3, 4, 5],
        (
            &[0.93, 0.94, 0.90, 0.96, 0.92, 0.95],
            &[0.80, 0.82, 0.81, 0.82, 0.80, 0.81],
        ),
        json!({"lr": 0.2}),
        ("code", &[]),
    );
    assert_eq!(
        supported.status.as_str(),
        "supported",
        "{}",
        supported.summary
    );
    let earlier = [logged(&supported, Stage::Baselines, 7, "code")];
    let contradicted = judge(
        Stage::Full,
        &[6, 7, 8, 9, 10, 11],
        (
            &[0.70, 0.72, 0.71, 0.72, 0.70, 0.71],
            &[0.93, 0.94, 0.90, 0.96, 0.92, 0.95],
        ),
        json!({"lr": 0.2}),
        ("code", &earlier),
    );
    assert_eq!(contradicted.status.as_str(), "contradicted");
    assert_eq!(
        contradicted.conflicts,
        vec![json!({"stage": "baselines", "stage_run": 7, "status": "supported", "event": 7})]
    );
    assert!(
        contradicted.summary.contains(
            "CONFLICT: contradicted here but supported in the baselines stage (run 7, research_log.jsonl event #7); both verdicts stand"
        ),
        "{}",
        contradicted.summary
    );
    // The pooled test says what all 12 seeds say together.
    assert_eq!(contradicted.evidence[0]["across_stages"][0]["n_pairs"], 12);
}

#[test]
fn the_latest_verdict_of_each_other_stage_is_the_one_compared() {
    let event = |seq: u64, stage: &str, status: &str| json!({"type": "hypothesis_evaluated", "seq": seq, "stage": stage, "stage_run": seq, "claim": "helps", "status": status});
    let events = [
        event(1, "baselines", "contradicted"),
        event(2, "full", "supported"),
        event(3, "baselines", "supported"),
        json!({"type": "hypothesis_evaluated", "seq": 4, "stage": "ablations", "claim": "other", "status": "contradicted"}),
    ];
    let others = other_stage_verdicts(&events, "helps", Stage::Full);
    assert_eq!(others.len(), 1);
    assert_eq!(others[0]["seq"], 3);
    assert!(conflicts("contradicted", &others).len() == 1);
    assert!(conflicts("supported", &others).is_empty());
    assert!(conflicts("inconclusive", &others).is_empty());
    assert_eq!(seed_ranges(&[0, 1, 2, 3, 10, 12, 13]), "0–3, 10, 12–13");
}
