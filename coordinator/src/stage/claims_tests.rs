//! Claim verdicts on hand-made groups: the sentence names the test, its interval and
//! the failed seeds; the interval excludes 0 exactly when the test's p < alpha; an
//! inconclusive claim says what power the seeds have.

use super::{evaluate, ClaimStatus};
use crate::stage::summary::analysis::{analyse_groups, Group};
use expcluster_core::config::{ExperimentConfig, LoadedConfig};
use expcluster_core::expand::VariantKind;
use expcluster_core::Stage;
use serde_json::Value;
use std::path::Path;

fn config(claim_extra: &str) -> LoadedConfig {
    let text = format!(
        "name: t\nprimary_metric: {{name: acc, goal: max}}\nmetrics: [acc]\n\
         job: {{command: [python, run.py]}}\n\
         methods: {{proposed: {{}}, baseline: {{}}}}\n\
         stages: {{baselines: {{seeds: 6}}}}\n\
         claims:\n  - {{id: helps, better: proposed, than: baseline, metric: acc{claim_extra}}}\n"
    );
    ExperimentConfig::parse(&text, Path::new("config.yaml")).expect("valid config")
}

fn group(variant: &str, values: &[f64]) -> Group {
    Group {
        variant: variant.to_owned(),
        kind: VariantKind::Method,
        stem: variant.to_owned(),
        point_index: None,
        sweep_point: Default::default(),
        seeds: (0..values.len() as u64).collect(),
        resolved: Value::Null,
        finals: [("acc".to_owned(), values.to_vec())].into_iter().collect(),
        curves: Default::default(),
    }
}

fn verdict(claim_extra: &str, proposed: &[f64], baseline: &[f64]) -> super::ClaimEvaluation {
    let loaded = config(claim_extra);
    let analysis = analyse_groups(
        &loaded,
        Stage::Baselines,
        vec!["acc".to_owned()],
        vec![group("proposed", proposed), group("baseline", baseline)],
    );
    evaluate(&loaded, &analysis)
        .pop()
        .expect("the claim is evaluated")
}

#[test]
fn an_inconclusive_claim_names_its_test_interval_failed_seed_and_power() {
    let proposed = [0.81, 0.83, 0.80, 0.86, 0.82, 0.84];
    let baseline = [0.80, 0.82, f64::NAN, 0.83, 0.83, 0.82];
    let evaluation = verdict("", &proposed, &baseline);
    assert_eq!(evaluation.status, ClaimStatus::Inconclusive);
    let summary = &evaluation.summary;
    for expected in [
        "paired t-test p = ",
        "95% CI [",
        "(paired t interval)",
        "n = 5 pairs, 1 failed seed excluded (baseline: seed 2)",
        "with 5 pairs the paired t-test detects a difference of ±",
        "with 80% power at alpha 0.05",
        "detecting the observed +",
    ] {
        assert!(summary.contains(expected), "{expected:?} not in {summary}");
    }
    let evidence = &evaluation.evidence[0];
    assert_eq!(evidence["planned_test"], "paired_t");
    assert_eq!(evidence["failed_seeds_than"], serde_json::json!([2]));
    assert_eq!(evidence["power"]["design"], "paired");
    assert!(evidence["power"]["seeds_needed"].as_u64().expect("seeds") > 5);
}

#[test]
fn the_interval_excludes_zero_exactly_when_the_test_rejects() {
    // Effects from none to clear, on the same noise: p crosses alpha on the way.
    let noise = [0.013, -0.008, 0.021, -0.017, 0.004, -0.011];
    let baseline = [0.80, 0.81, 0.79, 0.82, 0.80, 0.81];
    let mut seen = [false; 2];
    for step in 0..40 {
        let effect = f64::from(step) * 0.001;
        let proposed: Vec<f64> = baseline
            .iter()
            .zip(&noise)
            .map(|(b, e)| b + effect + e)
            .collect();
        for (extra, alpha) in [("", 0.05), (", alpha: 0.01", 0.01)] {
            let evaluation = verdict(extra, &proposed, &baseline);
            let evidence = &evaluation.evidence[0];
            let p = evidence["p_value"].as_f64().expect("p");
            let interval = &evidence["interval"];
            assert_eq!(interval["confidence"].as_f64(), Some(1.0 - alpha));
            let excludes = interval["low"].as_f64().expect("low") > 0.0
                || interval["high"].as_f64().expect("high") < 0.0;
            assert_eq!(excludes, p < alpha, "effect {effect}: {evidence}");
            seen[usize::from(excludes)] = true;
        }
    }
    assert_eq!(seen, [true, true], "both sides of alpha were exercised");
}

#[test]
fn a_claim_asking_for_a_rank_test_gets_it_with_the_hodges_lehmann_interval() {
    let proposed = [0.91, 0.93, 0.90, 0.96, 0.92, 0.94];
    let baseline = [0.80, 0.82, 0.79, 0.83, 0.81, 0.78];
    let evaluation = verdict(", test: mann_whitney", &proposed, &baseline);
    assert_eq!(evaluation.status, ClaimStatus::Supported);
    assert!(
        evaluation.summary.contains("Mann–Whitney U test p = ")
            && evaluation.summary.contains("Hodges–Lehmann exact interval")
            && evaluation.summary.contains("n = 6 vs 6, no failed seed"),
        "{}",
        evaluation.summary
    );
    let evidence = &evaluation.evidence[0];
    assert_eq!(evidence["planned_test"], "mann_whitney");
    assert_eq!(
        evidence["planned_test_reason"],
        "claim `helps` asks for mann_whitney"
    );
    assert_eq!(evidence["interval"]["method"], "hodges_lehmann_exact");
}

#[test]
fn a_zero_variance_difference_is_no_test_and_no_other_test_stands_in() {
    let baseline = [0.80, 0.81, 0.79, 0.82];
    let proposed: Vec<f64> = baseline.iter().map(|b| b + 0.01).collect();
    let evaluation = verdict("", &proposed, &baseline);
    assert_eq!(evaluation.status, ClaimStatus::Inconclusive);
    let evidence = &evaluation.evidence[0];
    assert_eq!(evidence["test"], Value::Null);
    assert_eq!(evidence["p_value"], Value::Null);
    assert!(
        evaluation.summary.contains("paired t-test not possible"),
        "{}",
        evaluation.summary
    );
}
