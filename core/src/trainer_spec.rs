//! PLACEHOLDER until the trainer's schema lands: accepts any object.
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct TrainerSpec {
    pub raw: Value,
}

impl TrainerSpec {
    pub fn from_json(value: &Value) -> Result<TrainerSpec, String> {
        if value.is_object() {
            Ok(TrainerSpec { raw: value.clone() })
        } else {
            Err("the trainer section must be a mapping".to_owned())
        }
    }

    pub fn metric_names(&self) -> Vec<String> {
        ["train_loss", "test_loss", "test_accuracy"].map(String::from).to_vec()
    }
}
