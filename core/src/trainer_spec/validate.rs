//! Bounds and cross-field checks, and error messages that say where the problem is.
//! Each concept's own checks live beside its types; this module runs them in order
//! and holds the small helpers they share.

use serde_json::Value;

use super::{
    data, loss, model, optimizer, schedule, stopping, DatasetSpec, EarlyStoppingSpec, LossSpec,
    ModelSpec, OptimizerSpec, ScheduleSpec, TrainerSpec,
};

/// Re-parses section by section so the message names the section as well as the key.
pub(super) fn locate_parse_error(value: &Value, err: serde_json::Error) -> String {
    let Some(map) = value.as_object() else {
        return "the trainer section must be a mapping".to_owned();
    };
    let section_error = |key: &str, section: &Value| -> Option<String> {
        let result = match key {
            "dataset" => serde_json::from_value::<DatasetSpec>(section.clone()).err(),
            "model" => serde_json::from_value::<ModelSpec>(section.clone()).err(),
            "optimizer" => serde_json::from_value::<OptimizerSpec>(section.clone()).err(),
            "schedule" => serde_json::from_value::<ScheduleSpec>(section.clone()).err(),
            "loss" => serde_json::from_value::<LossSpec>(section.clone()).err(),
            "early_stopping" => serde_json::from_value::<EarlyStoppingSpec>(section.clone()).err(),
            _ => None,
        };
        result.map(|err| format!("`{key}`: {err}"))
    };
    for (key, section) in map {
        if let Some(message) = section_error(key, section) {
            return message;
        }
    }
    err.to_string()
}

pub(super) fn check(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(message())
    }
}

pub(super) fn fraction(name: &str, value: f64) -> Result<(), String> {
    check((0.0..1.0).contains(&value), || {
        format!("`{name}` must be in [0, 1), got {value}")
    })
}

pub(super) fn positive(name: &str, value: f64) -> Result<(), String> {
    check(value.is_finite() && value > 0.0, || {
        format!("`{name}` must be a positive number, got {value}")
    })
}

pub(super) fn non_negative(name: &str, value: f64) -> Result<(), String> {
    check(value.is_finite() && value >= 0.0, || {
        format!("`{name}` must be ≥ 0, got {value}")
    })
}

pub(super) fn at_least(name: &str, value: usize, min: usize) -> Result<(), String> {
    check(value >= min, || {
        format!("`{name}` must be ≥ {min}, got {value}")
    })
}

pub(super) fn validate(spec: &TrainerSpec) -> Result<(), String> {
    at_least("epochs", spec.epochs, 1)?;
    at_least("batch_size", spec.batch_size, 1)?;
    at_least("checkpoint_every", spec.checkpoint_every, 1)?;
    at_least("threads", spec.threads, 1)?;
    if let Some(clip) = spec.grad_clip {
        positive("grad_clip", clip)?;
    }
    data::validate(&spec.dataset).map_err(|err| format!("dataset: {err}"))?;
    model::validate(&spec.model, &spec.dataset).map_err(|err| format!("model: {err}"))?;
    optimizer::validate(&spec.optimizer).map_err(|err| format!("optimizer: {err}"))?;
    schedule::validate(&spec.schedule, spec.epochs).map_err(|err| format!("schedule: {err}"))?;
    loss::task_consistency(spec)?;
    if let Some(stop) = &spec.early_stopping {
        stopping::validate(spec, stop).map_err(|err| format!("early_stopping: {err}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::minimal;
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_keys_are_named() {
        let mut value = minimal();
        value["model"]["hiden"] = json!([3]);
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("hiden") && err.contains("model"), "{err}");

        let mut value = minimal();
        value["epochz"] = json!(3);
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("epochz"), "{err}");

        let mut value = minimal();
        value["dataset"] = json!({"kind": "blobs", "n_sample": 10});
        let err = TrainerSpec::from_json(&value).expect_err("typo");
        assert!(err.contains("n_sample") && err.contains("dataset"), "{err}");

        let mut value = minimal();
        value["optimizer"] = json!({"kind": "adam", "momentum": 0.9});
        let err = TrainerSpec::from_json(&value).expect_err("momentum is sgd's");
        assert!(err.contains("momentum"), "{err}");

        let mut value = minimal();
        value["model"] = json!({"kind": "resnet"});
        let err = TrainerSpec::from_json(&value).expect_err("unknown kind");
        assert!(err.contains("resnet"), "{err}");
    }
}
