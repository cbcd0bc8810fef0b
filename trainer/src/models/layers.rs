//! Layers built from a named `nn::Path` (so `VarStore` checkpoints carry their
//! names), initialised from the trainer's own RNG with PyTorch's default bounds, and
//! aware of the compute dtype: under bf16 the matmul/conv inputs and weights are cast
//! inside the forward (the stored parameters stay fp32, or are bf16 already in pure
//! bf16, where the cast is a no-op).

use expcluster_core::trainer_spec::Activation;
use tch::{nn, Device, Kind, Tensor};

use super::Ctx;
use crate::native;
use crate::rng::{derive, Rng};

/// A trainable variable initialised from `rng`: U(-bound, bound), or N(0, std²) when
/// `normal` is set.
fn init_var(
    path: &nn::Path,
    name: &str,
    shape: &[i64],
    rng: &mut Rng,
    scale: f64,
    normal: bool,
) -> Tensor {
    let count: i64 = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| {
            let draw = if normal {
                rng.normal()
            } else {
                2.0 * rng.uniform() - 1.0
            };
            (draw * scale) as f32
        })
        .collect();
    let init = Tensor::from_slice(&values)
        .reshape(shape)
        .to_device(path.device());
    path.var_copy(name, &init)
}

/// `x W^T + b`, PyTorch's `nn.Linear` initialisation (kaiming-uniform, a = √5).
#[derive(Debug)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
    /// fp32 on the CPU runs on oneDNN ([`native::linear`]).
    cpu: bool,
}

impl Dense {
    pub fn new(path: nn::Path, inputs: i64, outputs: i64, rng: &mut Rng) -> Dense {
        let bound = 1.0 / (inputs as f64).sqrt();
        Dense {
            weight: init_var(&path, "weight", &[outputs, inputs], rng, bound, false),
            bias: init_var(&path, "bias", &[outputs], rng, bound, false),
            cpu: path.device() == Device::Cpu,
        }
    }

    pub fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let k = ctx.compute;
        // fp32 needs no casts: skipping them saves three dispatches a layer.
        if k == Kind::Float && x.kind() == Kind::Float {
            if !self.cpu {
                return x.linear(&self.weight, Some(&self.bias));
            }
            // As tch's own methods do, a libtorch error panics; the trainer turns
            // it into the job's error.
            return native::linear::linear(x, &self.weight, &self.bias)
                .unwrap_or_else(|err| panic!("{err}"));
        }
        x.to_kind(k)
            .linear(&self.weight.to_kind(k), Some(self.bias.to_kind(k)))
    }

    /// `relu(forward(x))`: on the CPU in fp32 one autograd function
    /// ([`native::linear::linear_relu`]: the bias and the ReLU in one pass, and
    /// backward the mask and the bias gradient in one pass); elsewhere the layer and
    /// an in-place ReLU.
    pub fn forward_relu(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        if self.cpu && ctx.compute == Kind::Float && x.kind() == Kind::Float {
            return native::linear::linear_relu(x, &self.weight, &self.bias)
                .unwrap_or_else(|err| panic!("{err}"));
        }
        activate_owned(self.forward(x, ctx), Activation::Relu)
    }
}

/// A same-padded 2-D convolution, `nn.Conv2d` initialisation.
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
}

impl Conv {
    pub fn new(path: nn::Path, inputs: i64, outputs: i64, kernel: i64, rng: &mut Rng) -> Conv {
        let bound = 1.0 / ((inputs * kernel * kernel) as f64).sqrt();
        Conv {
            weight: init_var(
                &path,
                "weight",
                &[outputs, inputs, kernel, kernel],
                rng,
                bound,
                false,
            ),
            bias: init_var(&path, "bias", &[outputs], rng, bound, false),
            padding: kernel / 2,
        }
    }

    pub fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let k = ctx.compute;
        let padding = [self.padding, self.padding];
        if k == Kind::Float && x.kind() == Kind::Float {
            return x.conv2d(&self.weight, Some(&self.bias), [1, 1], padding, [1, 1], 1);
        }
        x.to_kind(k).conv2d(
            &self.weight.to_kind(k),
            Some(self.bias.to_kind(k)),
            [1, 1],
            padding,
            [1, 1],
            1,
        )
    }
}

/// A learned table, N(0, std²) (embeddings).
#[derive(Debug)]
pub struct Table {
    pub weight: Tensor,
}

impl Table {
    pub fn new(path: nn::Path, rows: i64, width: i64, std: f64, rng: &mut Rng) -> Table {
        Table {
            weight: init_var(&path, "weight", &[rows, width], rng, std, true),
        }
    }
}

/// PyTorch's batch-norm initialisation (scale 1, shift 0). tch's default draws the
/// scale from U(0, 1) with libtorch's global generator, which would make the initial
/// weights depend on whatever else the process did.
fn batch_config() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        ..Default::default()
    }
}

/// Normalisation, computed in its parameters' dtype: fp32 under fp32 and AMP-style
/// bf16 (as autocast does), bf16 in pure bf16.
#[derive(Debug)]
pub enum NormLayer {
    Batch(nn::BatchNorm),
    Layer(nn::LayerNorm),
}

impl NormLayer {
    pub fn batch1d(path: nn::Path, width: i64) -> NormLayer {
        NormLayer::Batch(nn::batch_norm1d(path, width, batch_config()))
    }

    pub fn batch2d(path: nn::Path, channels: i64) -> NormLayer {
        NormLayer::Batch(nn::batch_norm2d(path, channels, batch_config()))
    }

    pub fn layer(path: nn::Path, width: i64) -> NormLayer {
        NormLayer::Layer(nn::layer_norm(path, vec![width], Default::default()))
    }

    pub fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let kind = match self {
            NormLayer::Batch(norm) => norm.running_mean.kind(),
            NormLayer::Layer(norm) => norm.ws.as_ref().map_or(Kind::Float, Tensor::kind),
        };
        let x = x.to_kind(kind);
        match self {
            NormLayer::Batch(norm) => nn::ModuleT::forward_t(norm, &x, ctx.train),
            NormLayer::Layer(norm) => nn::Module::forward(norm, &x),
        }
    }
}

/// [`activate`] on a fresh intermediate that nothing else holds (a layer's output):
/// ReLU runs in place, as `nn.ReLU(inplace=True)`, saving an activation-sized
/// allocation (the layers before it keep their inputs, not their outputs, for the
/// backward pass); the others allocate as usual.
pub fn activate_owned(x: Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Relu => {
            let mut x = x;
            x.relu_()
        }
        Activation::Gelu | Activation::Tanh | Activation::Silu => activate(&x, activation),
    }
}

fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Relu => x.relu(),
        Activation::Gelu => x.gelu("none"),
        Activation::Tanh => x.tanh(),
        Activation::Silu => x.silu(),
    }
}

/// Inverted dropout at one `site` of a forward pass (each call of a pass its own).
///
/// On the CPU the mask comes from the trainer's own stream, seeded by the step
/// (`ctx.dropout_seed`) and the site, so a job's masks do not depend on what else runs
/// in the process. libtorch's generator is process-wide: two jobs training at once in
/// one worker drew from it in turn, and the same seed gave different results (21 of
/// the demo's 49 jobs differed between two runs). On CUDA libtorch draws the mask on
/// the device from its generator, reseeded every step (a mask made on the host would
/// cost a copy per call); bit-reproducibility is only promised on the CPU.
pub fn dropout(x: &Tensor, p: f64, ctx: Ctx, site: u64) -> Tensor {
    if p <= 0.0 || !ctx.train {
        return x.shallow_clone();
    }
    if x.device() != tch::Device::Cpu {
        return x.dropout(p, true);
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mut rng = Rng::new(derive(ctx.dropout_seed, &[site]));
    let mask: Vec<f32> = (0..x.numel())
        .map(|_| if rng.uniform() < keep { scale } else { 0.0 })
        .collect();
    let mask = Tensor::from_slice(&mask)
        .view(x.size().as_slice())
        .to_kind(x.kind());
    x * mask
}
