//! Models: linear, MLP, CNN and a small Transformer encoder, built from a
//! [`ModelSpec`] for the dataset's input shape and output count. Every model maps a
//! batch of inputs to fp32 outputs `[batch, outputs]` (logits or regression values).

mod layers;
mod transformer;

use expcluster_core::trainer_spec::{Activation, ModelSpec, Norm, Pool};
use tch::{nn, Kind, Tensor};

use crate::rng::Rng;
use crate::TrainError;
use layers::{activate_owned, dropout, Conv, Dense, NormLayer};

/// How a forward pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub train: bool,
    /// Float, or BFloat16 for AMP-style and pure bf16.
    pub compute: Kind,
    /// This step's seed for dropout masks on the CPU ([`layers::dropout`]).
    pub dropout_seed: u64,
}

pub trait Net {
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor;
    /// Whether a training batch of one row would fail (batch norm needs two).
    fn needs_pairs(&self) -> bool {
        false
    }
}

/// What the data look like to the model.
#[derive(Debug, Clone)]
pub struct InputShape {
    /// One row's shape.
    pub row: Vec<i64>,
    /// `Some(vocabulary)` for token ids.
    pub vocab: Option<usize>,
}

pub fn build(
    spec: &ModelSpec,
    root: nn::Path,
    input: &InputShape,
    outputs: usize,
    rng: &mut Rng,
) -> Result<Box<dyn Net>, TrainError> {
    let outputs = outputs as i64;
    let flat: i64 = input.row.iter().product();
    match spec {
        ModelSpec::Linear {} => Ok(Box::new(Mlp::new(
            root,
            flat,
            &[],
            outputs,
            Activation::Relu,
            0.0,
            Norm::None,
            rng,
        ))),
        ModelSpec::Mlp {
            hidden,
            activation,
            dropout,
            norm,
        } => Ok(Box::new(Mlp::new(
            root,
            flat,
            hidden,
            outputs,
            *activation,
            *dropout,
            *norm,
            rng,
        ))),
        ModelSpec::Cnn { .. } => Ok(Box::new(Cnn::new(spec, root, &input.row, outputs, rng)?)),
        ModelSpec::Transformer { .. } => Ok(Box::new(transformer::Transformer::new(
            spec, root, input, outputs, rng,
        )?)),
    }
}

/// Flatten, then `[dense → norm → activation → dropout]*` and a final dense layer.
#[derive(Debug)]
pub struct Mlp {
    blocks: Vec<(Dense, Option<NormLayer>)>,
    head: Dense,
    activation: Activation,
    dropout: f64,
}

impl Mlp {
    #[allow(clippy::too_many_arguments)] // a constructor mirroring the spec's fields
    fn new(
        root: nn::Path,
        inputs: i64,
        hidden: &[usize],
        outputs: i64,
        activation: Activation,
        dropout: f64,
        norm: Norm,
        rng: &mut Rng,
    ) -> Mlp {
        let mut blocks = Vec::new();
        let mut width = inputs;
        for (i, &next) in hidden.iter().enumerate() {
            let next = next as i64;
            let dense = Dense::new(&root / format!("fc{i}"), width, next, rng);
            let norm = match norm {
                Norm::None => None,
                Norm::Batch => Some(NormLayer::batch1d(&root / format!("norm{i}"), next)),
                Norm::Layer => Some(NormLayer::layer(&root / format!("norm{i}"), next)),
            };
            blocks.push((dense, norm));
            width = next;
        }
        Mlp {
            blocks,
            head: Dense::new(&root / "head", width, outputs, rng),
            activation,
            dropout,
        }
    }

    fn run(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let mut h = x.flatten(1, -1);
        for (site, (dense, norm)) in self.blocks.iter().enumerate() {
            h = match (norm, self.activation) {
                (None, Activation::Relu) => dense.forward_relu(&h, ctx),
                (None, activation) => activate_owned(dense.forward(&h, ctx), activation),
                (Some(norm), activation) => {
                    activate_owned(norm.forward(&dense.forward(&h, ctx), ctx), activation)
                }
            };
            h = dropout(&h, self.dropout, ctx, site as u64);
        }
        let out = self.head.forward(&h, ctx);
        match ctx.compute {
            Kind::Float => out,
            _ => out.to_kind(Kind::Float),
        }
    }
}

impl Net for Mlp {
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        self.run(x, ctx)
    }

    fn needs_pairs(&self) -> bool {
        self.blocks
            .iter()
            .any(|(_, norm)| matches!(norm, Some(NormLayer::Batch(_))))
    }
}

/// Convolution blocks (conv → batch norm? → activation → 2×2 pool), then an MLP head.
#[derive(Debug)]
pub struct Cnn {
    image: [i64; 3],
    blocks: Vec<(Conv, Option<NormLayer>, bool)>,
    pool: Pool,
    head: Mlp,
    activation: Activation,
}

impl Cnn {
    fn new(
        spec: &ModelSpec,
        root: nn::Path,
        row: &[i64],
        outputs: i64,
        rng: &mut Rng,
    ) -> Result<Cnn, TrainError> {
        let ModelSpec::Cnn {
            channels,
            kernel_size,
            pool,
            hidden,
            activation,
            dropout,
            norm,
        } = spec
        else {
            return Err(TrainError::InvalidSpec("not a cnn".into()));
        };
        let image = image_shape(row)?;
        let [mut depth, mut height, mut width] = image;
        let mut blocks = Vec::new();
        for (i, &next) in channels.iter().enumerate() {
            let next = next as i64;
            let conv = Conv::new(
                &root / format!("conv{i}"),
                depth,
                next,
                *kernel_size as i64,
                rng,
            );
            let norm =
                (*norm == Norm::Batch).then(|| NormLayer::batch2d(&root / format!("bn{i}"), next));
            // Pool only while the map is at least 2×2.
            let pools = *pool != Pool::None && height >= 2 && width >= 2;
            if pools {
                height /= 2;
                width /= 2;
            }
            blocks.push((conv, norm, pools));
            depth = next;
        }
        let head = Mlp::new(
            &root / "head",
            depth * height * width,
            hidden,
            outputs,
            *activation,
            *dropout,
            Norm::None,
            rng,
        );
        Ok(Cnn {
            image,
            blocks,
            pool: *pool,
            head,
            activation: *activation,
        })
    }
}

/// `[c, h, w]` as is, `[h, w]` as one channel, `[d]` with square `d` as a square image.
fn image_shape(row: &[i64]) -> Result<[i64; 3], TrainError> {
    match row {
        [c, h, w] => Ok([*c, *h, *w]),
        [h, w] => Ok([1, *h, *w]),
        [d] => {
            let side = (*d as f64).sqrt().round() as i64;
            if side * side == *d {
                Ok([1, side, side])
            } else {
                Err(TrainError::Data(format!(
                    "a cnn needs image rows ([c, h, w], [h, w] or a square length); got {d} features"
                )))
            }
        }
        _ => Err(TrainError::Data(format!(
            "a cnn cannot take rows of shape {row:?}"
        ))),
    }
}

impl Net for Cnn {
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let [c, h, w] = self.image;
        let mut a = x.view([-1, c, h, w]);
        for (conv, norm, pools) in &self.blocks {
            a = conv.forward(&a, ctx);
            if let Some(norm) = norm {
                a = norm.forward(&a, ctx);
            }
            a = activate_owned(a, self.activation);
            if *pools {
                a = match self.pool {
                    Pool::Max => a.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false),
                    Pool::Avg => a.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>),
                    Pool::None => a,
                };
            }
        }
        self.head.run(&a, ctx)
    }

    fn needs_pairs(&self) -> bool {
        self.blocks.iter().any(|(_, norm, _)| norm.is_some())
    }
}
