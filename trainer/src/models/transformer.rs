//! A small pre-norm Transformer encoder for sequence classification or regression:
//! token (or linear) embedding + learned positions, `layers` × (self-attention, GELU
//! feed-forward) with residuals, a final layer norm, mean pooling and a linear head.

use expcluster_core::trainer_spec::ModelSpec;
use tch::{nn, Kind, Tensor};

use super::layers::{dropout, Dense, NormLayer, Table};
use super::{Ctx, InputShape, Net};
use crate::rng::Rng;
use crate::TrainError;

#[derive(Debug)]
enum Embed {
    Tokens(Table),
    /// `[len]` rows embed each scalar, `[len, f]` rows each feature vector.
    Values(Dense),
}

#[derive(Debug)]
struct Block {
    norm1: NormLayer,
    qkv: Dense,
    proj: Dense,
    norm2: NormLayer,
    ff1: Dense,
    ff2: Dense,
}

#[derive(Debug)]
pub struct Transformer {
    embed: Embed,
    positions: Table,
    blocks: Vec<Block>,
    norm: NormLayer,
    head: Dense,
    heads: i64,
    dropout: f64,
}

impl Transformer {
    pub fn new(
        spec: &ModelSpec,
        root: nn::Path,
        input: &InputShape,
        outputs: i64,
        rng: &mut Rng,
    ) -> Result<Transformer, TrainError> {
        let ModelSpec::Transformer {
            d_model,
            heads,
            layers,
            ff,
            max_len,
            dropout,
        } = spec
        else {
            return Err(TrainError::InvalidSpec("not a transformer".into()));
        };
        let (d, ff) = (*d_model as i64, *ff as i64);
        let (len, embed) = match (input.vocab, input.row.as_slice()) {
            (Some(vocab), [len]) => (*len, Embed::Tokens(Table::new(&root / "tokens", vocab as i64, d, 0.02, rng))),
            (None, [len]) => (*len, Embed::Values(Dense::new(&root / "embed", 1, d, rng))),
            (None, [len, features]) => (*len, Embed::Values(Dense::new(&root / "embed", *features, d, rng))),
            _ => {
                return Err(TrainError::Data(format!(
                    "a transformer takes rows of token ids [len], or values [len] or [len, features]; got {:?}",
                    input.row
                )))
            }
        };
        if len > *max_len as i64 {
            return Err(TrainError::Data(format!(
                "sequences have length {len}, longer than the model's max_len {max_len}"
            )));
        }
        let blocks = (0..*layers)
            .map(|i| {
                let p = &root / format!("layer{i}");
                Block {
                    norm1: NormLayer::layer(&p / "norm1", d),
                    qkv: Dense::new(&p / "qkv", d, 3 * d, rng),
                    proj: Dense::new(&p / "proj", d, d, rng),
                    norm2: NormLayer::layer(&p / "norm2", d),
                    ff1: Dense::new(&p / "ff1", d, ff, rng),
                    ff2: Dense::new(&p / "ff2", ff, d, rng),
                }
            })
            .collect();
        Ok(Transformer {
            embed,
            positions: Table::new(&root / "positions", *max_len as i64, d, 0.02, rng),
            blocks,
            norm: NormLayer::layer(&root / "norm", d),
            head: Dense::new(&root / "head", d, outputs, rng),
            heads: *heads as i64,
            dropout: *dropout,
        })
    }

    fn attention(&self, block: &Block, x: &Tensor, ctx: Ctx) -> Tensor {
        let (batch, len, d) = x.size3().expect("activations are [batch, len, d]");
        let head_dim = d / self.heads;
        // [batch, len, 3, heads, head_dim] → three [batch, heads, len, head_dim].
        let qkv = block
            .qkv
            .forward(x, ctx)
            .view([batch, len, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let p = if ctx.train { self.dropout } else { 0.0 };
        let attended =
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, p, false, None, false);
        let merged = attended.transpose(1, 2).reshape([batch, len, d]);
        block.proj.forward(&merged, ctx)
    }
}

impl Net for Transformer {
    fn forward(&self, x: &Tensor, ctx: Ctx) -> Tensor {
        let mut h = match &self.embed {
            Embed::Tokens(table) => Tensor::embedding(&table.weight, x, -1, false, false),
            Embed::Values(dense) => {
                let values = if x.dim() == 2 {
                    x.unsqueeze(-1)
                } else {
                    x.shallow_clone()
                };
                dense.forward(&values, ctx).to_kind(Kind::Float)
            }
        };
        let len = h.size()[1];
        // Out of place: layer norm saved `h` for the backward pass.
        h = &h + self.positions.weight.narrow(0, 0, len);
        h = dropout(&h, self.dropout, ctx, 0);
        for (index, block) in self.blocks.iter().enumerate() {
            // Each dropout of the pass draws its own mask (sites 0, 1, 2, ...).
            let site = 1 + 2 * index as u64;
            let a = self.attention(block, &block.norm1.forward(&h, ctx), ctx);
            h = &h + dropout(&a.to_kind(Kind::Float), self.dropout, ctx, site);
            let f = block
                .ff1
                .forward(&block.norm2.forward(&h, ctx), ctx)
                .gelu("none");
            let f = block.ff2.forward(&f, ctx);
            h = &h + dropout(&f.to_kind(Kind::Float), self.dropout, ctx, site + 1);
        }
        let pooled = self.norm.forward(&h, ctx).mean_dim(1, false, Kind::Float);
        self.head.forward(&pooled, ctx).to_kind(Kind::Float)
    }
}
