//! The network a trainer job builds: linear, MLP, CNN or Transformer encoder.

use serde::{Deserialize, Serialize};

use super::data::DatasetSpec;
use super::validate::{at_least, check, fraction};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    Linear {},
    Mlp {
        #[serde(default = "default_hidden")]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
        #[serde(default)]
        dropout: f64,
        #[serde(default)]
        norm: Norm,
    },
    /// Same-padded convolutions, each followed by optional batch norm, the activation
    /// and a 2×2 pool; then an MLP head. Flat inputs with a square length are reshaped
    /// to one-channel square images (digits: 64 → 8×8).
    Cnn {
        #[serde(default = "default_channels")]
        channels: Vec<usize>,
        #[serde(default = "default_kernel_size")]
        kernel_size: usize,
        #[serde(default)]
        pool: Pool,
        #[serde(default = "default_cnn_hidden")]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
        #[serde(default)]
        dropout: f64,
        #[serde(default)]
        norm: Norm,
    },
    /// Pre-norm Transformer encoder, learned positions, mean pooling. Integer inputs
    /// are tokens; float inputs `[n, len]` or `[n, len, f]` are linearly embedded.
    Transformer {
        #[serde(default = "default_d_model")]
        d_model: usize,
        #[serde(default = "default_heads")]
        heads: usize,
        #[serde(default = "default_layers")]
        layers: usize,
        #[serde(default = "default_ff")]
        ff: usize,
        #[serde(default = "default_max_len")]
        max_len: usize,
        #[serde(default)]
        dropout: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Gelu,
    Tanh,
    Silu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    #[default]
    None,
    Batch,
    Layer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    #[default]
    Max,
    Avg,
    None,
}

fn default_hidden() -> Vec<usize> {
    vec![256, 256]
}
fn default_channels() -> Vec<usize> {
    vec![16, 32]
}
fn default_kernel_size() -> usize {
    3
}
fn default_cnn_hidden() -> Vec<usize> {
    vec![64]
}
fn default_d_model() -> usize {
    64
}
fn default_heads() -> usize {
    4
}
fn default_layers() -> usize {
    2
}
fn default_ff() -> usize {
    128
}
fn default_max_len() -> usize {
    64
}

pub(super) fn validate(model: &ModelSpec, dataset: &DatasetSpec) -> Result<(), String> {
    let hidden_ok = |hidden: &[usize]| {
        check(hidden.iter().all(|&width| width >= 1), || {
            format!("`hidden` widths must be ≥ 1, got {hidden:?}")
        })
    };
    match model {
        ModelSpec::Linear {} => Ok(()),
        ModelSpec::Mlp {
            hidden, dropout, ..
        } => {
            hidden_ok(hidden)?;
            fraction("dropout", *dropout)
        }
        ModelSpec::Cnn {
            channels,
            kernel_size,
            hidden,
            dropout,
            norm,
            ..
        } => {
            check(!channels.is_empty(), || "`channels` is empty".to_owned())?;
            check(channels.iter().all(|&c| c >= 1), || {
                format!("`channels` must be ≥ 1, got {channels:?}")
            })?;
            check(kernel_size % 2 == 1, || {
                format!("`kernel_size` must be odd (same padding), got {kernel_size}")
            })?;
            check(*norm != Norm::Layer, || {
                "`norm: layer` is not supported for cnn; use batch or none".to_owned()
            })?;
            hidden_ok(hidden)?;
            fraction("dropout", *dropout)
        }
        ModelSpec::Transformer {
            d_model,
            heads,
            layers,
            ff,
            max_len,
            dropout,
        } => {
            at_least("heads", *heads, 1)?;
            at_least("layers", *layers, 1)?;
            at_least("ff", *ff, 1)?;
            at_least("max_len", *max_len, 1)?;
            check(*d_model >= 1 && d_model % heads == 0, || {
                format!("`d_model` ({d_model}) must be a positive multiple of `heads` ({heads})")
            })?;
            if let DatasetSpec::Sequences(s) = dataset {
                check(s.seq_len <= *max_len, || {
                    format!(
                        "`max_len` ({max_len}) is shorter than the sequences ({})",
                        s.seq_len
                    )
                })?;
            }
            fraction("dropout", *dropout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::assert_rejected;
    use serde_json::json;

    #[test]
    fn model_bounds_are_checked() {
        assert_rejected(vec![
            (json!({"model": {"kind": "mlp", "dropout": 1.0}}), "dropout"),
            (
                json!({"model": {"kind": "cnn", "kernel_size": 4}}),
                "kernel_size",
            ),
            (
                json!({"model": {"kind": "transformer", "d_model": 30, "heads": 4}}),
                "d_model",
            ),
        ]);
    }
}
