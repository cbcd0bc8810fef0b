//! Dotted-path overrides (`trainer.model.dropout: 0.0`) applied to the job template.
//!
//! An override may only replace something that exists, or add a key under `trainer`
//! (validated against the trainer's schema afterwards) or `env`: a typo such as
//! `trainer.modle.dropout` or `params.hiden` is an error, never a silent new key.
//! The one exception is a path whose parent is an object with a `kind` switch being
//! replaced whole (`trainer.model: {kind: linear}`), which replaces the subtree.

use serde_json::Value;

/// Why an override could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideError {
    pub path: String,
    pub reason: String,
}

/// Applies one override in place.
pub fn apply_override(target: &mut Value, path: &str, value: &Value) -> Result<(), OverrideError> {
    let error = |reason: String| OverrideError {
        path: path.to_owned(),
        reason,
    };
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|part| part.is_empty()) {
        return Err(error("empty segment in the path".to_owned()));
    }
    let (last, parents) = parts
        .split_last()
        .ok_or_else(|| error("empty path".to_owned()))?;
    let mut node = target;
    let mut walked = Vec::new();
    for part in parents {
        walked.push(*part);
        node = match node {
            Value::Object(map) => {
                if !map.contains_key(*part) {
                    return Err(error(format!(
                        "`{}` names nothing in the job (known keys there: {})",
                        walked.join("."),
                        known_keys(map)
                    )));
                }
                map.get_mut(*part)
                    .ok_or_else(|| error("vanished key".to_owned()))?
            }
            _ => {
                return Err(error(format!(
                    "`{}` is not a mapping, so it has no key `{}`",
                    walked[..walked.len() - 1].join("."),
                    part
                )))
            }
        };
    }
    match node {
        Value::Object(map) => {
            if !map.contains_key(*last) && !may_add_keys(&parts) {
                return Err(error(format!(
                    "`{path}` names nothing in the job (known keys there: {})",
                    known_keys(map)
                )));
            }
            map.insert((*last).to_owned(), value.clone());
            Ok(())
        }
        _ => Err(error(format!(
            "`{}` is not a mapping, so it has no key `{last}`",
            parents.join(".")
        ))),
    }
}

/// Whether an override may add a new key at this path. Under `trainer` yes: the
/// resolved trainer is validated against its schema afterwards, so a typo is still
/// caught, and optional settings need not be in the template. Under `env` yes: it is
/// a free map. Anywhere else (`params`, the job itself) no: nothing validates those
/// afterwards, so a new key there is almost always a typo of an existing one.
fn may_add_keys(parts: &[&str]) -> bool {
    parts.len() > 1 && matches!(parts[0], "trainer" | "env")
}

fn known_keys(map: &serde_json::Map<String, Value>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_and_adds_leaves() {
        let mut job = json!({"trainer": {"model": {"kind": "mlp", "dropout": 0.1}}});
        apply_override(&mut job, "trainer.model.dropout", &json!(0.0)).expect("valid path");
        apply_override(&mut job, "trainer.model.norm", &json!("layer")).expect("new leaf");
        assert_eq!(job["trainer"]["model"]["dropout"], json!(0.0));
        assert_eq!(job["trainer"]["model"]["norm"], json!("layer"));
        apply_override(&mut job, "trainer.model", &json!({"kind": "linear"})).expect("subtree");
        assert_eq!(job["trainer"]["model"], json!({"kind": "linear"}));
    }

    #[test]
    fn rejects_paths_that_name_nothing() {
        let mut job = json!({"trainer": {"model": {"kind": "mlp"}}});
        let err = apply_override(&mut job, "trainer.modle.dropout", &json!(0.0))
            .expect_err("typo must fail");
        assert!(err.reason.contains("trainer.modle"), "{}", err.reason);
        assert!(apply_override(&mut job, "trainer.model.kind.x", &json!(1)).is_err());
        assert!(apply_override(&mut job, "trainer..x", &json!(1)).is_err());
    }

    #[test]
    fn params_and_the_job_root_take_no_new_keys() {
        let mut job = json!({"command": ["python"], "params": {"hidden": 8}, "env": {}});
        apply_override(&mut job, "params.hidden", &json!(0)).expect("existing param");
        let err = apply_override(&mut job, "params.hiden", &json!(0)).expect_err("typo");
        assert!(
            err.reason.contains("known keys there: hidden"),
            "{}",
            err.reason
        );
        assert!(apply_override(&mut job, "comand", &json!(["x"])).is_err());
        apply_override(&mut job, "env.OMP_NUM_THREADS", &json!("1")).expect("env is free");
    }
}
