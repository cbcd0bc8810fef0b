//! Synthetic datasets, generated from `data_seed` alone (never the training seed), so
//! every seed of an experiment trains on the same data. Train and test rows are drawn
//! from one stream and split.

use expcluster_core::trainer_spec::{ImagesSpec, SequencesSpec, SyntheticSpec};
use tch::Tensor;

use super::{RawData, Split};
use crate::rng::{derive, purpose, Rng};

fn rng_for(data_seed: u64, generator: u64) -> Rng {
    Rng::new(derive(data_seed, &[purpose::DATA, generator]))
}

/// Splits row-major features `[n, row...]` and labels into train and test.
fn split(n_train: usize, row: &[i64], x: Vec<f32>, y: Tensor) -> RawData {
    let n = y.size()[0];
    let mut shape = vec![n];
    shape.extend_from_slice(row);
    let x = Tensor::from_slice(&x).reshape(shape);
    let n_train = n_train as i64;
    RawData {
        train: Split {
            x: x.narrow(0, 0, n_train),
            y: y.narrow(0, 0, n_train),
        },
        val: None,
        test: Split {
            x: x.narrow(0, n_train, n - n_train),
            y: y.narrow(0, n_train, n - n_train),
        },
    }
}

/// Gaussian clusters: class centres drawn N(0, 1) per feature, points spread by `noise`.
pub fn blobs(s: &SyntheticSpec) -> RawData {
    let mut rng = rng_for(s.data_seed, 1);
    let classes = s.n_classes.unwrap_or(4);
    let d = s.n_features;
    let centres: Vec<f64> = (0..classes * d).map(|_| rng.normal()).collect();
    let n = s.n_train + s.n_test;
    let (mut x, mut y) = (Vec::with_capacity(n * d), Vec::with_capacity(n));
    for _ in 0..n {
        let class = rng.below(classes);
        for j in 0..d {
            x.push((centres[class * d + j] + s.noise * rng.normal()) as f32);
        }
        y.push(class as i64);
    }
    split(s.n_train, &[d as i64], x, Tensor::from_slice(&y))
}

/// Pads a 2-D point with `n_features - 2` pure-noise features.
fn pad(x: &mut Vec<f32>, point: [f64; 2], s: &SyntheticSpec, rng: &mut Rng) {
    x.push(point[0] as f32);
    x.push(point[1] as f32);
    for _ in 2..s.n_features {
        x.push((s.noise * rng.normal()) as f32);
    }
}

/// scikit-learn's two moons, plus Gaussian noise.
pub fn moons(s: &SyntheticSpec) -> RawData {
    let mut rng = rng_for(s.data_seed, 2);
    let n = s.n_train + s.n_test;
    let (mut x, mut y) = (Vec::new(), Vec::with_capacity(n));
    for _ in 0..n {
        let class = rng.below(2);
        let t = std::f64::consts::PI * rng.uniform();
        let point = if class == 0 {
            [t.cos(), t.sin()]
        } else {
            [1.0 - t.cos(), 0.5 - t.sin()]
        };
        let noisy = [
            point[0] + s.noise * rng.normal(),
            point[1] + s.noise * rng.normal(),
        ];
        pad(&mut x, noisy, s, &mut rng);
        y.push(class as i64);
    }
    split(s.n_train, &[s.n_features as i64], x, Tensor::from_slice(&y))
}

/// One spiral arm per class, each turning 1.5 times.
pub fn spirals(s: &SyntheticSpec) -> RawData {
    let mut rng = rng_for(s.data_seed, 3);
    let classes = s.n_classes.unwrap_or(3);
    let n = s.n_train + s.n_test;
    let (mut x, mut y) = (Vec::new(), Vec::with_capacity(n));
    for _ in 0..n {
        let class = rng.below(classes);
        let r = rng.uniform();
        let angle = std::f64::consts::TAU * (class as f64 / classes as f64 + 1.5 * r);
        let point = [
            r * angle.cos() + s.noise * rng.normal(),
            r * angle.sin() + s.noise * rng.normal(),
        ];
        pad(&mut x, point, s, &mut rng);
        y.push(class as i64);
    }
    split(s.n_train, &[s.n_features as i64], x, Tensor::from_slice(&y))
}

/// Regression on the outputs of a random `d → 32 → outputs` tanh network, scaled to
/// unit variance, plus `noise` × N(0, 1): the best possible R² is about 1/(1+noise²).
pub fn teacher(s: &SyntheticSpec) -> RawData {
    const HIDDEN: usize = 32;
    let mut rng = rng_for(s.data_seed, 4);
    let (d, outputs) = (s.n_features, s.n_outputs.unwrap_or(1));
    let w1: Vec<f64> = (0..d * HIDDEN)
        .map(|_| rng.normal() / (d as f64).sqrt())
        .collect();
    let w2: Vec<f64> = (0..HIDDEN * outputs)
        .map(|_| rng.normal() / (HIDDEN as f64).sqrt())
        .collect();
    let n = s.n_train + s.n_test;
    let mut x = Vec::with_capacity(n * d);
    let mut clean = Vec::with_capacity(n * outputs);
    for _ in 0..n {
        let row: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
        let hidden: Vec<f64> = (0..HIDDEN)
            .map(|h| {
                (0..d)
                    .map(|j| row[j] * w1[j * HIDDEN + h])
                    .sum::<f64>()
                    .tanh()
            })
            .collect();
        for o in 0..outputs {
            clean.push(
                (0..HIDDEN)
                    .map(|h| hidden[h] * w2[h * outputs + o])
                    .sum::<f64>(),
            );
        }
        x.extend(row.iter().map(|&v| v as f32));
    }
    let mean = clean.iter().sum::<f64>() / clean.len() as f64;
    let std = (clean.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / clean.len() as f64)
        .sqrt()
        .max(1e-12);
    let y: Vec<f32> = clean
        .iter()
        .map(|v| ((v - mean) / std + s.noise * rng.normal()) as f32)
        .collect();
    let y = Tensor::from_slice(&y).reshape([n as i64, outputs as i64]);
    split(s.n_train, &[d as i64], x, y)
}

/// Each class is a random ±1 template on a 4×4 grid, upsampled to the image size;
/// a sample is its class template circularly shifted by up to a quarter of the image
/// in each direction, plus Gaussian noise. Shifts make convolutions pay off.
pub fn images(s: &ImagesSpec) -> RawData {
    let mut rng = rng_for(s.data_seed, 5);
    let (size, channels) = (s.image_size, s.channels);
    let cell = size.div_ceil(4);
    let templates: Vec<f64> = (0..s.n_classes * channels * 16)
        .map(|_| if rng.uniform() < 0.5 { -1.0 } else { 1.0 })
        .collect();
    let max_shift = (size / 4).max(1);
    let n = s.n_train + s.n_test;
    let (mut x, mut y) = (
        Vec::with_capacity(n * channels * size * size),
        Vec::with_capacity(n),
    );
    for _ in 0..n {
        let class = rng.below(s.n_classes);
        let dy = rng.below(2 * max_shift + 1);
        let dx = rng.below(2 * max_shift + 1);
        for c in 0..channels {
            for row in 0..size {
                for col in 0..size {
                    let sr = (row + size + dy - max_shift) % size;
                    let sc = (col + size + dx - max_shift) % size;
                    let t = templates[((class * channels + c) * 4 + sr / cell) * 4 + sc / cell];
                    x.push((t + s.noise * rng.normal()) as f32);
                }
            }
        }
        y.push(class as i64);
    }
    let row = [channels as i64, size as i64, size as i64];
    split(s.n_train, &row, x, Tensor::from_slice(&y))
}

/// Tokens `0..n_classes` are class markers, the rest filler. A sequence's class is
/// the marker planted most often (3 times); the other markers appear at most twice.
pub fn sequences(s: &SequencesSpec) -> RawData {
    let mut rng = rng_for(s.data_seed, 6);
    let (len, classes) = (s.seq_len, s.n_classes);
    let fillers = s.vocab_size - classes;
    let n = s.n_train + s.n_test;
    let (mut x, mut y) = (Vec::with_capacity(n * len), Vec::with_capacity(n));
    for _ in 0..n {
        let class = rng.below(classes);
        let mut tokens: Vec<i64> = (0..len)
            .map(|_| (classes + rng.below(fillers)) as i64)
            .collect();
        let mut plant = vec![class as i64; 3.min(len)];
        for other in (0..classes).filter(|&c| c != class) {
            let count = rng.below(3);
            plant.extend(std::iter::repeat_n(other as i64, count));
        }
        let mut positions: Vec<usize> = (0..len).collect();
        rng.shuffle(&mut positions);
        for (token, position) in plant.into_iter().zip(positions) {
            tokens[position] = token;
        }
        x.extend(tokens.iter().map(|&t| t as f32));
        y.push(class as i64);
    }
    let RawData { train, val, test } = split(s.n_train, &[len as i64], x, Tensor::from_slice(&y));
    let as_tokens = |split: Split| Split {
        x: split.x.to_kind(tch::Kind::Int64),
        y: split.y,
    };
    RawData {
        train: as_tokens(train),
        val,
        test: as_tokens(test),
    }
}
