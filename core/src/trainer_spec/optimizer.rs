//! The optimizer (Adam, AdamW, SGD) and its hyperparameters.

use serde::{Deserialize, Serialize};

use super::validate::{check, fraction, non_negative, positive};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    Adam {
        #[serde(default = "default_lr")]
        lr: f64,
        /// L2 penalty added to the gradient (PyTorch `Adam`).
        #[serde(default)]
        weight_decay: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
    },
    Adamw {
        #[serde(default = "default_lr")]
        lr: f64,
        /// Decoupled weight decay (PyTorch `AdamW`, default 0.01).
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
        #[serde(default = "default_betas")]
        betas: [f64; 2],
        #[serde(default = "default_eps")]
        eps: f64,
    },
    Sgd {
        #[serde(default = "default_sgd_lr")]
        lr: f64,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
    },
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam {
            lr: default_lr(),
            weight_decay: 0.0,
            betas: default_betas(),
            eps: default_eps(),
        }
    }
}

impl OptimizerSpec {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. }
            | OptimizerSpec::Sgd { lr, .. } => *lr,
        }
    }
}

fn default_lr() -> f64 {
    1.0e-3
}
fn default_sgd_lr() -> f64 {
    1.0e-2
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1.0e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}

pub(super) fn validate(optimizer: &OptimizerSpec) -> Result<(), String> {
    match optimizer {
        OptimizerSpec::Adam {
            lr,
            weight_decay,
            betas,
            eps,
        }
        | OptimizerSpec::Adamw {
            lr,
            weight_decay,
            betas,
            eps,
        } => {
            positive("lr", *lr)?;
            non_negative("weight_decay", *weight_decay)?;
            fraction("betas[0]", betas[0])?;
            fraction("betas[1]", betas[1])?;
            positive("eps", *eps)
        }
        OptimizerSpec::Sgd {
            lr,
            weight_decay,
            momentum,
            nesterov,
        } => {
            positive("lr", *lr)?;
            non_negative("weight_decay", *weight_decay)?;
            fraction("momentum", *momentum)?;
            check(!*nesterov || *momentum > 0.0, || {
                "`nesterov: true` needs `momentum` > 0".to_owned()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn optimizer_bounds_are_checked() {
        assert_rejected(vec![
            (json!({"optimizer": {"kind": "adam", "lr": 0.0}}), "lr"),
            (json!({"optimizer": {"kind": "sgd", "lr": -1.0}}), "lr"),
            (
                json!({"optimizer": {"kind": "sgd", "nesterov": true}}),
                "nesterov",
            ),
        ]);
    }
}
