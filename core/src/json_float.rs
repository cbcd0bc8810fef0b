//! Floats in JSON files and log events. JSON has no NaN or infinity, and serde_json
//! writes them as `null`, which would silently turn a diverged run into a missing
//! value. Non-finite values are written as the strings `"nan"`, `"inf"` and `"-inf"`
//! (what Python's `float()` accepts) and read back as such.

use serde_json::Value;
use std::collections::BTreeMap;

pub fn to_json(value: f64) -> Value {
    if value.is_finite() {
        Value::from(value)
    } else if value.is_nan() {
        Value::from("nan")
    } else if value > 0.0 {
        Value::from("inf")
    } else {
        Value::from("-inf")
    }
}

pub fn from_json(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => match text.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A map of metric → value.
pub fn map_to_json(values: &BTreeMap<String, f64>) -> Value {
    Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), to_json(*v)))
            .collect(),
    )
}

/// A map of metric → series.
pub fn series_to_json(series: &BTreeMap<String, Vec<f64>>) -> Value {
    Value::Object(
        series
            .iter()
            .map(|(k, values)| {
                (
                    k.clone(),
                    Value::Array(values.iter().map(|v| to_json(*v)).collect()),
                )
            })
            .collect(),
    )
}

pub fn map_from_json(value: &Value) -> BTreeMap<String, f64> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| from_json(v).map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

pub fn series_from_json(value: &Value) -> BTreeMap<String, Vec<f64>> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| {
                    let values = v
                        .as_array()
                        .map(|a| a.iter().map(|x| from_json(x).unwrap_or(f64::NAN)).collect())
                        .unwrap_or_default();
                    (k.clone(), values)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_round_trip() {
        for value in [0.5, -2.0, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(from_json(&to_json(value)), Some(value));
        }
        assert!(from_json(&to_json(f64::NAN)).is_some_and(f64::is_nan));
        assert_eq!(from_json(&Value::Null), None);
    }
}
