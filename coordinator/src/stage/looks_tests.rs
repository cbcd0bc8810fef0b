//! The second look's rules on hand-made research logs: which look a stage is at, and
//! every refusal (no design, a design declared after the first look, no inconclusive
//! claim, a third look, seeds changed after a look).

use super::{check_first_look_seeds, plan_second_look, stage_look, SEEDS_ADDED_EVENT};
use expcluster_core::config::{ExperimentConfig, LoadedConfig};
use expcluster_core::Stage;
use expcluster_stats::Boundary;
use serde_json::{json, Value};
use std::path::Path;

fn config(full: &str) -> LoadedConfig {
    let text = format!(
        "name: t\nprimary_metric: {{name: acc, goal: max}}\nmetrics: [acc]\n\
         job: {{command: [python, run.py]}}\n\
         methods: {{proposed: {{}}, baseline: {{}}}}\n\
         stages: {{full: {full}}}\n\
         claims:\n  - {{id: helps, better: proposed, than: baseline, metric: acc}}\n"
    );
    ExperimentConfig::parse(&text, Path::new("config.yaml")).expect("valid config")
}

const DESIGNED: &str = "{seeds: 5, seed_base: 10, sequential: {max_seeds: 12}}";

fn completed(seq: u64, run: u64) -> Value {
    json!({"seq": seq, "type": "experiment_completed", "stage": "full", "stage_run": run})
}

fn evaluated(seq: u64, run: u64, status: &str, sequential: Value) -> Value {
    json!({
        "seq": seq, "type": "hypothesis_evaluated", "stage": "full", "stage_run": run,
        "claim": "helps", "alpha": 0.05, "status": status, "sequential": sequential,
        "evidence": [{"power": {"seeds_needed": 9}, "sequential": {"power_at_max_seeds": 0.83}}],
    })
}

fn first_look(seeds: u32) -> Value {
    json!({"look": 1, "seeds_first_look": seeds, "max_seeds": 12, "boundary": "obrien_fleming"})
}

#[test]
fn a_declared_design_is_at_look_one_until_the_second_is_opened() {
    let loaded = config(DESIGNED);
    let look = stage_look(&loaded, Stage::Full, &[]).expect("a design");
    assert_eq!(
        (look.look, look.seeds(), look.design.boundary),
        (1, 5, Boundary::ObrienFleming)
    );
    assert!(look.in_first_look(10) && look.in_first_look(14) && !look.in_first_look(15));
    assert!(!look.in_first_look(9));
    assert!(stage_look(&config("{seeds: 5}"), Stage::Full, &[]).is_none());

    let events = vec![
        completed(3, 1),
        evaluated(4, 1, "inconclusive", first_look(5)),
    ];
    let second = plan_second_look(&loaded, Stage::Full, &events).expect("second look");
    assert_eq!((second.look.look, second.look.seeds()), (2, 12));
    assert_eq!(second.payload["seeds_first_look"], 5);
    assert_eq!(second.payload["max_seeds"], 12);
    assert_eq!(second.payload["seed_base"], 10);
    assert_eq!(second.payload["first_look_run"], 1);
    assert_eq!(second.payload["claims"][0]["seeds_needed"], json!([9]));
    let levels = second.payload["nominal_alpha"].as_array().expect("levels");
    assert_eq!(levels.len(), 2);
    assert!(
        second.note.contains("seeds 5 → 12") && second.note.contains("helps"),
        "{}",
        second.note
    );

    // Once opened, the stage is at look 2 with the recorded design, whatever the
    // config says now; a third look is refused.
    let mut opened = events.clone();
    let mut event = second.payload.clone();
    event["type"] = json!(SEEDS_ADDED_EVENT);
    event["seq"] = json!(5);
    opened.push(event);
    let edited = config("{seeds: 6, sequential: {max_seeds: 30, boundary: pocock}}");
    let look = stage_look(&edited, Stage::Full, &opened).expect("look 2");
    assert_eq!(
        (look.look, look.design.first_look, look.design.max),
        (2, 5, 12)
    );
    assert_eq!(look.design.boundary, Boundary::ObrienFleming);
    let third = plan_second_look(&loaded, Stage::Full, &opened).expect_err("refused");
    assert!(
        third.contains("already had its second and last look") && third.contains("#5"),
        "{third}"
    );
}

#[test]
fn a_second_look_is_refused_without_a_design_a_verdict_to_change_or_a_first_look() {
    let events = vec![
        completed(3, 1),
        evaluated(4, 1, "inconclusive", Value::Null),
    ];
    let undeclared =
        plan_second_look(&config("{seeds: 5}"), Stage::Full, &events).expect_err("refused");
    assert!(
        undeclared.contains("declares no second look") && undeclared.contains("max_seeds"),
        "{undeclared}"
    );

    // The design was added to config.yaml after the first look was judged without it.
    let late = plan_second_look(&config(DESIGNED), Stage::Full, &events).expect_err("refused");
    assert!(
        late.contains("was not judged under the design") && late.contains("#4"),
        "{late}"
    );

    let settled = vec![completed(3, 1), evaluated(4, 1, "supported", first_look(5))];
    let nothing = plan_second_look(&config(DESIGNED), Stage::Full, &settled).expect_err("refused");
    assert!(nothing.contains("no claim is inconclusive"), "{nothing}");

    let never = plan_second_look(&config(DESIGNED), Stage::Full, &[]).expect_err("refused");
    assert!(never.contains("has not finished a run"), "{never}");
}

#[test]
fn raising_seeds_after_a_judged_first_look_is_refused() {
    let events = vec![
        completed(3, 1),
        evaluated(4, 1, "inconclusive", first_look(5)),
    ];
    assert!(check_first_look_seeds(&config(DESIGNED), Stage::Full, &events).is_ok());
    let raised = config("{seeds: 8, seed_base: 10, sequential: {max_seeds: 12}}");
    let refused = check_first_look_seeds(&raised, Stage::Full, &events).expect_err("refused");
    assert!(
        refused.contains("first look of 5 seeds") && refused.contains("--seeds-for-power"),
        "{refused}"
    );
    // A stage without a design is not this rule's business.
    assert!(check_first_look_seeds(&config("{seeds: 8}"), Stage::Full, &events).is_ok());
}
