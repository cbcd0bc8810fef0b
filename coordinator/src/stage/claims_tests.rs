//! Claim verdicts on hand-made groups: the sentence names the test, its interval and
//! the failed seeds; the interval excludes 0 exactly when the test's p < alpha; an
//! inconclusive claim says what power the seeds have.

use super::{evaluate, ClaimStatus, StageContext};
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
    let seeds: Vec<u64> = (0..values.len() as u64).collect();
    group_at(variant, Value::Null, &seeds, values)
}

/// A method's group on metric `acc`: what it ran and its value at each seed.
pub(crate) fn group_at(variant: &str, resolved: Value, seeds: &[u64], values: &[f64]) -> Group {
    Group {
        variant: variant.to_owned(),
        kind: VariantKind::Method,
        stem: variant.to_owned(),
        point_index: None,
        sweep_point: Default::default(),
        seeds: seeds.to_vec(),
        resolved,
        finals: [("acc".to_owned(), values.to_vec())].into_iter().collect(),
        curves: Default::default(),
    }
}

fn verdict(claim_extra: &str, proposed: &[f64], baseline: &[f64]) -> super::ClaimEvaluation {
    verdict_with(claim_extra, None, proposed, baseline)
}

fn verdict_with(
    claim_extra: &str,
    look: Option<&crate::stage::looks::StageLook>,
    proposed: &[f64],
    baseline: &[f64],
) -> super::ClaimEvaluation {
    let loaded = config(claim_extra);
    let analysis = analyse_groups(
        &loaded,
        Stage::Baselines,
        vec!["acc".to_owned()],
        vec![group("proposed", proposed), group("baseline", baseline)],
    );
    let context = StageContext {
        look,
        ..StageContext::default()
    };
    evaluate(&loaded, &analysis, &context)
        .pop()
        .expect("the claim is evaluated")
}

/// Asserts the verdict and a piece of its sentence.
#[track_caller]
fn assert_verdict(evaluation: &super::ClaimEvaluation, status: ClaimStatus, says: &str) {
    assert_eq!(evaluation.status, status, "{}", evaluation.summary);
    assert!(
        evaluation.summary.contains(says),
        "{says:?} not in {}",
        evaluation.summary
    );
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

/// Holm's family for the verdicts is the declared claims' tests, not every comparison
/// of the stage: two methods that no claim is about do not dilute the one claim, while
/// the summary's exploratory Holm (over all three comparisons) would have kept it
/// inconclusive. With two claims, the family is their two tests.
#[test]
fn the_holm_family_of_the_verdicts_is_the_declared_claims() {
    let baseline = [0.80, 0.81, 0.79, 0.82, 0.80, 0.81];
    let proposed = [0.833, 0.822, 0.831, 0.823, 0.824, 0.819]; // paired p = 0.0201
    let other = [0.70, 0.83, 0.75, 0.90, 0.77, 0.80];
    let unclaimed = [0.85, 0.78, 0.80, 0.79, 0.86, 0.80];
    let text = |claims: &str| {
        format!(
            "name: t\nprimary_metric: {{name: acc, goal: max}}\nmetrics: [acc]\n\
             job: {{command: [python, run.py]}}\n\
             methods: {{proposed: {{}}, baseline: {{}}, other: {{}}, unclaimed: {{}}}}\n\
             stages: {{baselines: {{seeds: 6}}}}\nclaims:\n{claims}"
        )
    };
    let groups = || {
        vec![
            group("proposed", &proposed),
            group("baseline", &baseline),
            group("other", &other),
            group("unclaimed", &unclaimed),
        ]
    };
    let one = "  - {id: helps, better: proposed, than: baseline, metric: acc}\n";
    let loaded = ExperimentConfig::parse(&text(one), Path::new("config.yaml")).expect("config");
    let analysis = analyse_groups(&loaded, Stage::Baselines, vec!["acc".into()], groups());
    let tested = analysis
        .test_between("acc", 0, 1)
        .expect("proposed vs baseline");
    let p = tested.p_value.expect("p");
    assert!(
        (p - 0.020130814194562585).abs() < 1e-12,
        "scipy ttest_rel: {p}"
    );
    assert_eq!(analysis.family_size, 3, "the summary's exploratory family");
    assert!(tested.p_holm.expect("holm") > 0.05, "{:?}", tested.p_holm);
    let evaluation = evaluate(&loaded, &analysis, &StageContext::default())
        .pop()
        .expect("evaluated");
    let evidence = &evaluation.evidence[0];
    assert_eq!(evidence["family_size"], 1, "{evidence}");
    assert_eq!(evidence["p_holm"].as_f64(), Some(p));
    assert_verdict(&evaluation, ClaimStatus::Supported, "over 1 claim test;");

    // Two claims: Holm over exactly their two p-values (statsmodels' multipletests
    // 'holm' on [0.02013, p(proposed vs other)]).
    let two = format!("{one}  - {{id: beats-other, better: proposed, than: other, metric: acc}}\n");
    let loaded = ExperimentConfig::parse(&text(&two), Path::new("config.yaml")).expect("config");
    let analysis = analyse_groups(&loaded, Stage::Baselines, vec!["acc".into()], groups());
    let p_other = analysis
        .test_between("acc", 0, 2)
        .and_then(|t| t.p_value)
        .expect("p");
    let evaluations = evaluate(&loaded, &analysis, &StageContext::default());
    let holm: Vec<f64> = evaluations
        .iter()
        .map(|e| e.evidence[0]["p_holm"].as_f64().expect("holm"))
        .collect();
    let expected = expcluster_stats::holm_bonferroni(&[p, p_other]);
    assert_eq!(holm, expected);
    assert!(
        (holm[0] - 2.0 * p).abs() < 1e-15,
        "the smaller p is doubled"
    );
    for evaluation in &evaluations {
        assert_eq!(evaluation.evidence[0]["family_size"], 2);
    }
}

/// Under a declared O'Brien–Fleming design (6 then 12 seeds) the first look judges
/// at nominal 0.0052, so p = 0.0201 that a single look would call supported is
/// inconclusive there; the second look recomputes the first look's p from its seeds,
/// takes the sequential p-value to Holm, and names the look and its level.
#[test]
fn a_two_look_design_judges_each_look_at_its_nominal_level() {
    use crate::stage::looks::StageLook;
    use expcluster_stats::{Boundary, TwoLookDesign};
    let design = TwoLookDesign::new(Boundary::ObrienFleming, 6, 12).expect("design");
    let [level1, level2] = design.nominal_levels(0.05).expect("levels");
    let baseline = [0.80, 0.81, 0.79, 0.82, 0.80, 0.81];
    let proposed = [0.833, 0.822, 0.831, 0.823, 0.824, 0.819]; // paired p = 0.0201
    assert_eq!(
        verdict("", &proposed, &baseline).status,
        ClaimStatus::Supported
    );

    let first = StageLook {
        design,
        look: 1,
        seed_base: 0,
    };
    let evaluation = verdict_with("", Some(&first), &proposed, &baseline);
    assert_eq!(evaluation.status, ClaimStatus::Inconclusive);
    let evidence = &evaluation.evidence[0];
    let p = evidence["p_value"].as_f64().expect("p");
    let sequential = design
        .sequential_p_value(Some(p), None)
        .expect("sequential p");
    assert_eq!(
        evidence["sequential"]["sequential_p"].as_f64(),
        Some(sequential)
    );
    assert_eq!(
        evidence["p_holm"].as_f64(),
        Some(sequential),
        "one claim test"
    );
    assert_eq!(
        evidence["sequential"]["nominal_alpha"].as_f64(),
        Some(level1)
    );
    assert_eq!(
        evidence["interval"]["confidence"].as_f64(),
        Some(1.0 - level1)
    );
    assert!(evidence["sequential"]["power_at_max_seeds"]
        .as_f64()
        .is_some());
    for expected in [
        "look 1 of 2 (O'Brien–Fleming, 6 then 12 seeds): nominal alpha 0.0052 at this look, 0.0480 at look 2",
        "`expcluster submit --stage baselines --seeds-for-power`) runs 12 seeds: power then ",
        "nominal alpha 0.0480 of the second look (alpha 0.0500, O'Brien–Fleming)",
    ] {
        assert!(evaluation.summary.contains(expected), "{expected:?} not in {}", evaluation.summary);
    }
    assert_eq!(evaluation.sequential.as_ref().expect("design")["look"], 1);

    // Look 2: six more seeds with the same effect.
    let more_baseline = [0.79, 0.80, 0.82, 0.81, 0.80, 0.79];
    let more_proposed = [0.812, 0.818, 0.834, 0.833, 0.818, 0.815];
    let all_baseline: Vec<f64> = baseline.iter().chain(&more_baseline).copied().collect();
    let all_proposed: Vec<f64> = proposed.iter().chain(&more_proposed).copied().collect();
    let second = StageLook { look: 2, ..first };
    let evaluation = verdict_with("", Some(&second), &all_proposed, &all_baseline);
    let evidence = &evaluation.evidence[0];
    let p_all = evidence["p_value"].as_f64().expect("p");
    assert_eq!(evidence["sequential"]["p_first_look"].as_f64(), Some(p));
    let sequential = design
        .sequential_p_value(Some(p), Some(p_all))
        .expect("sequential p");
    assert_eq!(evidence["p_holm"].as_f64(), Some(sequential));
    assert_eq!(
        evidence["sequential"]["nominal_alpha"].as_f64(),
        Some(level2)
    );
    assert!(p_all < level2, "the second look's data reject: {p_all}");
    assert_verdict(
        &evaluation,
        ClaimStatus::Supported,
        "look 2 of 2 (O'Brien–Fleming, 6 then 12 seeds): nominal alpha 0.0480 at this look, 0.0052 at look 1 (p there 0.0201)",
    );
}
