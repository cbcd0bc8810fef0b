//! Bucketed all-reduce of many tensors: consecutive tensors of one dtype are
//! concatenated into flat buckets of about [`BUCKET_BYTES`], each bucket is summed
//! across ranks with one collective, and the sums are copied back. One collective per
//! bucket instead of one per tensor keeps the per-message latency from dominating
//! small models, while bounding the extra memory to one bucket.

use std::ops::Range;
use std::sync::atomic::AtomicBool;

use tch::{Kind, Tensor};

use super::Collective;
use crate::TrainError;

/// Target bucket size (a tensor larger than this gets a bucket of its own).
pub const BUCKET_BYTES: usize = 4 << 20;

/// Splits tensors, given as (dtype, bytes), into runs of consecutive indices of one
/// dtype whose bytes stay within `limit` (a run always holds at least one tensor).
pub fn plan(items: &[(Kind, usize)], limit: usize) -> Vec<Range<usize>> {
    let mut buckets = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, &(kind, size)) in items.iter().enumerate() {
        let same_kind = index > start && items[start].0 == kind;
        if index > start && (!same_kind || bytes + size > limit) {
            buckets.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < items.len() {
        buckets.push(start..items.len());
    }
    buckets
}

/// Sums `tensors` across ranks in place. Float and Double reduce as they are; any
/// other dtype (integer buffers) travels as Double, exact below 2^53.
pub fn all_reduce_sum(
    comm: &mut dyn Collective,
    tensors: &[Tensor],
    cancel: &AtomicBool,
) -> Result<(), TrainError> {
    let wire_kind = |t: &Tensor| match t.kind() {
        Kind::Float => Kind::Float,
        _ => Kind::Double,
    };
    let items: Vec<(Kind, usize)> = tensors
        .iter()
        .map(|t| {
            let kind = wire_kind(t);
            let bytes = t.numel() * if kind == Kind::Float { 4 } else { 8 };
            (kind, bytes)
        })
        .collect();
    for bucket in plan(&items, BUCKET_BYTES) {
        let members = &tensors[bucket.clone()];
        let kind = items[bucket.start].0;
        let flat = tch::no_grad(|| {
            let parts: Vec<Tensor> = members
                .iter()
                .map(|t| t.detach().to_kind(kind).reshape([-1]))
                .collect();
            Tensor::cat(&parts, 0)
        });
        comm.all_reduce_sum(&flat, cancel)?;
        tch::no_grad(|| -> Result<(), TrainError> {
            let mut offset = 0;
            for member in members {
                let numel = member.numel() as i64;
                let part = flat.narrow(0, offset, numel).view_as(member);
                member.shallow_clone().f_copy_(&part)?;
                offset += numel;
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_the_limit_and_dtype_boundaries() {
        let f = |bytes| (Kind::Float, bytes);
        let d = |bytes| (Kind::Double, bytes);
        assert_eq!(plan(&[], 10), Vec::<Range<usize>>::new());
        assert_eq!(plan(&[f(4), f(4), f(4)], 10), vec![0..2, 2..3]);
        assert_eq!(plan(&[f(40), f(4), f(4)], 10), vec![0..1, 1..3]);
        assert_eq!(plan(&[f(4), d(4), d(4), f(4)], 100), vec![0..1, 1..3, 3..4]);
        assert_eq!(plan(&[f(10), f(10)], 10), vec![0..1, 1..2]);
    }
}
