//! The training loop: device and precision set-up, resume, epochs of seeded
//! mini-batch steps, evaluation, metric emission, early stopping, checkpoints and
//! the `.npy` results.
//!
//! Invariant: everything random in step `s` of epoch `e` is a function of (seed, e, s)
//! (the batch order, libtorch's generator reseeded for dropout), and the checkpoint
//! holds the rest (weights, optimizer buffers, history), so resuming at any step
//! reproduces the uninterrupted run.
//!
//! In a data-parallel gang ([`Gang`]) every rank runs this same loop on its shard of
//! each global batch; the gang sums the gradients before clipping and the optimizer
//! step, and agrees on the running loss and on cancellation. Only rank 0 reads and
//! writes checkpoints, emits metrics and writes results.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use expcluster_core::trainer_spec::{LossSpec, ModelSpec, Precision, StopMode, Task, TrainerSpec};
use tch::{nn::VarStore, Device, Kind, Reduction, Tensor};

use crate::checkpoint::{self, TrainState};
use crate::data::{self, Dataset};
use crate::distributed::gang::Gang;
use crate::metrics::evaluate;
use crate::models::{self, Ctx, InputShape, Net};
use crate::native;
use crate::npy::{encode_f64, write_atomic};
use crate::optim::Optimizer;
use crate::rng::{derive, epoch_permutation, purpose, Rng};
use crate::schedule::learning_rate;
use crate::{DeviceChoice, MetricSink, TrainError, TrainJob, TrainReport};

/// The state of one running job.
struct Run<'a> {
    job: &'a TrainJob<'a>,
    data: Dataset,
    net: Box<dyn Net>,
    vs: VarStore,
    optimizer: Optimizer,
    state: TrainState,
    compute: Kind,
    device: Device,
    gang: Option<Gang<'a>>,
    /// In a gang: whether any rank has been asked to cancel (as of the last agreement).
    gang_cancel: bool,
    /// The current step's seed for dropout masks (a function of seed, epoch, step and
    /// rank, so a resumed run draws the same ones).
    step_seed: u64,
    /// Whether the model draws dropout masks, so libtorch's generator needs reseeding
    /// every step.
    dropout: bool,
    /// Each step's rows are gathered into these (sized for a full batch, on the
    /// device), so a step allocates no batch.
    batch_x: Tensor,
    batch_y: Tensor,
}

/// Where ranks other than 0 send their metrics.
struct Discard;

impl MetricSink for Discard {
    fn emit(&mut self, _name: &str, _value: f64) {}
}

pub fn run(job: &TrainJob<'_>, sink: &mut dyn MetricSink) -> Result<TrainReport, TrainError> {
    let spec = job.spec;
    spec.validate().map_err(TrainError::InvalidSpec)?;
    crate::heap::keep_freed_memory();
    tch::set_num_threads(spec.threads as i32);
    let (device, device_name) = resolve_device(job.device)?;
    let compute = match spec.precision {
        Precision::Fp32 => Kind::Float,
        Precision::Bf16 | Precision::Bf16Pure => Kind::BFloat16,
    };
    let data = data::load(spec, job.data_root)?.to_device(device);
    let mut vs = VarStore::new(device);
    let input = InputShape {
        row: data.row_shape(),
        vocab: data.vocab,
    };
    let mut init_rng = Rng::new(derive(job.seed, &[purpose::INIT]));
    let net = models::build(&spec.model, vs.root(), &input, data.outputs, &mut init_rng)?;
    if spec.precision == Precision::Bf16Pure {
        // The fp32 initialisation rounded to bf16; layers hold the same tensors, so
        // they see it. Optimizer buffers are made below in the same dtype.
        vs.bfloat16();
    }
    let mut optimizer = Optimizer::new(&spec.optimizer, vs.trainable_variables());

    let mut gang = job
        .distributed
        .as_ref()
        .map(|role| Gang::connect(role, device, job.cancel))
        .transpose()?;
    let leader = gang.as_ref().is_none_or(Gang::is_leader);
    let mut discard = Discard;
    let sink: &mut dyn MetricSink = if leader { sink } else { &mut discard };
    let fingerprint = fingerprint(spec, job.seed);
    let mut state = TrainState::fresh(fingerprint.clone());
    let mut resumed_from_epoch = None;
    let restored = match leader {
        true => checkpoint::load_latest(job.checkpoint_dir, &mut vs, &fingerprint)?,
        false => None,
    };
    if let Some(restored) = restored {
        optimizer.load_state(
            restored.optimizer_state,
            restored.state.optimizer_steps,
            device,
        )?;
        resumed_from_epoch = Some(restored.state.epoch);
        tracing::info!(
            epoch = restored.state.epoch,
            step = restored.state.step_in_epoch,
            "resuming from checkpoint"
        );
        state = restored.state;
        // To the coordinator a resumed run is a new attempt whose series start empty:
        // replay the checkpointed history first, so the final series have no gap and
        // no repeat.
        for (name, values) in &state.history {
            for value in values {
                sink.emit(name, *value);
            }
        }
    }
    if let Some(gang) = &mut gang {
        gang.share_start(&vs, &mut optimizer, &mut state)?;
        resumed_from_epoch = (state.global_step > 0).then_some(state.epoch);
    }
    let batch_buffer = |t: &Tensor| {
        let mut shape = t.size();
        shape[0] = shape[0].min(spec.batch_size as i64);
        Tensor::empty(shape, (t.kind(), t.device()))
    };
    let (batch_x, batch_y) = (batch_buffer(&data.train.x), batch_buffer(&data.train.y));
    let mut run = Run {
        job,
        data,
        net,
        vs,
        optimizer,
        state,
        compute,
        device,
        gang,
        gang_cancel: false,
        step_seed: 0,
        dropout: uses_dropout(&spec.model),
        batch_x,
        batch_y,
    };
    run.train(sink)?;
    run.write_results()?;
    let final_metrics = run
        .state
        .history
        .iter()
        .filter_map(|(name, values)| Some((name.clone(), *values.last()?)))
        .collect();
    Ok(TrainReport {
        epochs_run: run.state.epoch,
        resumed_from_epoch,
        final_metrics,
        device: device_name,
    })
}

fn resolve_device(choice: DeviceChoice) -> Result<(Device, String), TrainError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "cpu".to_owned())),
        DeviceChoice::Cuda(index) => {
            let count = tch::Cuda::device_count() as usize;
            if !tch::Cuda::is_available() || index >= count {
                return Err(TrainError::Device(format!(
                    "cuda:{index} requested but {count} CUDA device(s) are visible"
                )));
            }
            // Shapes are fixed per job, so cuDNN's autotuning pays off.
            tch::Cuda::cudnn_set_benchmark(true);
            Ok((Device::Cuda(index), format!("cuda:{index}")))
        }
    }
}

fn uses_dropout(model: &ModelSpec) -> bool {
    match model {
        ModelSpec::Linear {} => false,
        ModelSpec::Mlp { dropout, .. }
        | ModelSpec::Cnn { dropout, .. }
        | ModelSpec::Transformer { dropout, .. } => *dropout > 0.0,
    }
}

/// FNV-1a of the spec's JSON and the seed: what a checkpoint must match to be resumed.
fn fingerprint(spec: &TrainerSpec, seed: u64) -> String {
    let text = serde_json::to_string(spec).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes().chain(seed.to_le_bytes()) {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}-seed{seed}")
}

/// `train_loss` → `train_losses.npy`, `test_accuracy` → `test_accuracies.npy`.
pub fn result_file(metric: &str) -> String {
    if let Some(stem) = metric.strip_suffix('y') {
        format!("{stem}ies.npy")
    } else if metric.ends_with('s') {
        format!("{metric}es.npy")
    } else {
        format!("{metric}s.npy")
    }
}

impl<'a> Run<'a> {
    fn spec(&self) -> &'a TrainerSpec {
        self.job.spec
    }

    fn steps_per_epoch(&self) -> usize {
        let n = self.data.train.rows();
        let batch = self.spec().batch_size;
        let steps = n.div_ceil(batch);
        // Batch norm cannot train on a final batch of one row: drop it.
        if self.net.needs_pairs() && n % batch == 1 && steps > 1 {
            steps - 1
        } else {
            steps
        }
    }

    fn train(&mut self, sink: &mut dyn MetricSink) -> Result<(), TrainError> {
        let spec = self.spec();
        let (epochs, batch) = (spec.epochs, spec.batch_size as i64);
        let steps = self.steps_per_epoch();
        let rows = self.data.train.rows() as i64;
        while self.state.epoch < epochs && !self.state.stopped_early {
            let epoch = self.state.epoch;
            let order = Tensor::from_slice(&epoch_permutation(self.job.seed, epoch, rows as usize))
                .to_device(self.device);
            let started = Instant::now();
            let mut samples_here = 0usize;
            // In a gang the resumed part of the epoch's loss is counted by rank 0 only.
            let leader = self.gang.as_ref().is_none_or(Gang::is_leader);
            let resumed_loss = if leader {
                self.state.partial_loss_sum
            } else {
                0.0
            };
            let mut loss_sum = Tensor::from(resumed_loss).to_device(self.device);
            for step in self.state.step_in_epoch..steps {
                if self.cancel_requested() {
                    self.state.step_in_epoch = step;
                    self.state.partial_loss_sum = self.global_loss_sum(&loss_sum)?;
                    self.checkpoint()?;
                    return Err(TrainError::Cancelled);
                }
                // Rank r > 0 draws its own dropout masks; rank 0 (or a lone process)
                // the same ones as always.
                let rank = self.gang.as_ref().map_or(0, Gang::rank) as u64;
                let mut stream = vec![purpose::TORCH, epoch as u64, step as u64];
                stream.extend((rank > 0).then_some(rank));
                self.step_seed = derive(self.job.seed, &stream);
                // libtorch's generator draws dropout masks on CUDA (layers.rs) and the
                // Transformer's attention dropout: reseeded only for models with dropout.
                if self.dropout {
                    tch::manual_seed(self.step_seed as i64);
                }
                let start = step as i64 * batch;
                let len = batch.min(rows - start);
                let (shard_start, shard_len, mine) = self.shard(len);
                let index = order.narrow(0, start + shard_start, shard_len);
                // The previous step's backward pass has run (on CUDA, earlier on the
                // same stream), so its batch may be overwritten.
                let x = self.batch_x.narrow(0, 0, shard_len);
                let y = self.batch_y.narrow(0, 0, shard_len);
                let _ = self.data.train.x.f_index_select_out(&x, 0, &index)?;
                let _ = self.data.train.y.f_index_select_out(&y, 0, &index)?;
                let lr = learning_rate(
                    &spec.schedule,
                    spec.optimizer.lr(),
                    epochs,
                    epoch,
                    step,
                    steps,
                );
                let loss = self.loss(&x, &y);
                // A rank's mean loss weighs its share of the global batch, so the
                // summed gradients are those of the global batch's mean loss.
                let objective = match self.gang.is_some() {
                    true => &loss * (mine as f64 / len as f64),
                    false => loss.shallow_clone(),
                };
                // This step's gradients straight from autograd: no `.grad` to zero
                // and none to accumulate into (PyTorch's set-to-none `zero_grad`).
                let grads =
                    Tensor::f_run_backward(&[&objective], self.optimizer.params(), false, false)?;
                if let Some(gang) = &mut self.gang {
                    gang.sum_gradients(&grads)?;
                }
                if let Some(max_norm) = spec.grad_clip {
                    Optimizer::clip_grad_norm(&grads, max_norm);
                }
                self.optimizer.step(&grads, lr)?;
                loss_sum += loss.detach().to_kind(Kind::Double) * mine as f64;
                samples_here += len as usize;
                self.state.partial_samples += len as usize;
                self.state.global_step += 1;
                self.state.optimizer_steps = self.optimizer.steps;
                let evaluate_now = spec.eval_every_steps > 0
                    && self.state.global_step % spec.eval_every_steps as u64 == 0;
                if let Some(gang) = &self.gang {
                    if !evaluate_now && gang.sync_due(self.state.global_step) {
                        self.global_loss_sum(&loss_sum)?;
                    }
                }
                if evaluate_now {
                    let running =
                        self.global_loss_sum(&loss_sum)? / self.state.partial_samples as f64;
                    sink.emit("step_train_loss", running);
                    for (name, value) in self.evaluate_all() {
                        sink.emit(&format!("step_{name}"), value);
                    }
                }
            }
            // Reading the loss waits for the device, so the time covers the work, not
            // just its queueing (CUDA runs asynchronously).
            let train_loss =
                self.global_loss_sum(&loss_sum)? / self.state.partial_samples.max(1) as f64;
            let seconds = started.elapsed().as_secs_f64();
            let mut scores = self.evaluate_all();
            scores.insert("train_loss".into(), train_loss);
            scores.insert(
                "samples_per_sec".into(),
                samples_here as f64 / seconds.max(1e-9),
            );
            let names = TrainerSpec::epoch_metric_names(self.data.task, self.data.val.is_some());
            for name in names {
                let value = *scores
                    .get(name)
                    .ok_or_else(|| TrainError::Torch(format!("metric {name} not computed")))?;
                sink.emit(name, value);
                self.state
                    .history
                    .entry(name.to_owned())
                    .or_default()
                    .push(value);
            }
            self.state.epoch += 1;
            self.state.step_in_epoch = 0;
            self.state.partial_loss_sum = 0.0;
            self.state.partial_samples = 0;
            self.update_early_stopping(&scores)?;
            if let Some(gang) = &mut self.gang {
                // Batch-norm statistics are per rank, so scores may differ: rank 0 decides.
                self.state.stopped_early = gang.broadcast_flag(self.state.stopped_early)?;
            }
            let last = self.state.epoch == epochs || self.state.stopped_early;
            if last || self.state.epoch % spec.checkpoint_every == 0 {
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// The rows `(start, count)` this rank runs of a global batch of `len` rows, and
    /// how many of them are its own. An empty shard runs the whole batch with weight
    /// zero, so every rank has a gradient for every parameter.
    fn shard(&self, len: i64) -> (i64, i64, i64) {
        match self.gang.as_ref().map(|gang| gang.shard(len)) {
            None => (0, len, len),
            Some((_, 0)) => (0, len, 0),
            Some((start, count)) => (start, count, count),
        }
    }

    fn cancel_requested(&self) -> bool {
        match self.gang {
            None => self.job.cancel.load(Ordering::SeqCst),
            Some(_) => self.gang_cancel,
        }
    }

    /// The epoch's loss sum so far over the whole global batch. In a gang this is a
    /// collective (every rank calls it at the same steps) that also agrees on
    /// cancellation.
    fn global_loss_sum(&mut self, loss_sum: &Tensor) -> Result<f64, TrainError> {
        let local = loss_sum.double_value(&[]);
        let Some(gang) = &mut self.gang else {
            return Ok(local);
        };
        let (total, cancel) = gang.agree(local)?;
        self.gang_cancel |= cancel;
        Ok(total)
    }

    /// The training criterion on one batch (label smoothing included).
    fn loss(&self, x: &Tensor, y: &Tensor) -> Tensor {
        let ctx = Ctx {
            train: true,
            compute: self.compute,
            dropout_seed: self.step_seed,
        };
        let out = self.net.forward(x, ctx);
        match (self.data.task, &self.spec().loss) {
            (Task::Classification, loss) => {
                let smoothing = match loss {
                    Some(LossSpec::CrossEntropy { label_smoothing }) => *label_smoothing,
                    _ => 0.0,
                };
                // fp32 logits on the CPU: one pass forward and one backward
                // (native::loss) instead of libtorch's four softmax/NLL kernels.
                let fused = smoothing == 0.0
                    && self.device == Device::Cpu
                    && out.kind() == Kind::Float
                    && out.dim() == 2;
                if fused {
                    // As tch's own methods do, a libtorch error panics; the trainer
                    // turns it into the job's error.
                    return native::loss::cross_entropy(&out, y)
                        .unwrap_or_else(|err| panic!("{err}"));
                }
                out.cross_entropy_loss::<Tensor>(y, None, Reduction::Mean, -100, smoothing)
            }
            (Task::Regression, _) => out.mse_loss(y, Reduction::Mean),
        }
    }

    /// Validation (if any) and test scores.
    fn evaluate_all(&self) -> BTreeMap<String, f64> {
        let mut scores = evaluate(
            self.net.as_ref(),
            &self.data.test,
            self.data.task,
            self.compute,
            "test",
        );
        if let Some(val) = &self.data.val {
            scores.extend(evaluate(
                self.net.as_ref(),
                val,
                self.data.task,
                self.compute,
                "val",
            ));
        }
        scores
    }

    fn update_early_stopping(&mut self, scores: &BTreeMap<String, f64>) -> Result<(), TrainError> {
        let Some(stop) = &self.spec().early_stopping else {
            return Ok(());
        };
        let value = *scores.get(&stop.metric).ok_or_else(|| {
            TrainError::Data(format!(
                "early_stopping.metric `{}` is not produced (no validation split?)",
                stop.metric
            ))
        })?;
        let improved = match (self.state.best, stop.resolved_mode()) {
            (None, _) => true,
            (Some(best), StopMode::Min) => value < best - stop.min_delta,
            (Some(best), StopMode::Max) => value > best + stop.min_delta,
        };
        if improved {
            self.state.best = Some(value);
            self.state.epochs_since_best = 0;
        } else {
            self.state.epochs_since_best += 1;
            if self.state.epochs_since_best >= stop.patience {
                tracing::info!(epoch = self.state.epoch, metric = %stop.metric, "early stopping");
                self.state.stopped_early = true;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), TrainError> {
        if let Some(gang) = &self.gang {
            // Weights stepped with gradients of an aborted all-reduce are not kept.
            gang.healthy()?;
            if !gang.is_leader() {
                return Ok(());
            }
        }
        checkpoint::save(
            self.job.checkpoint_dir,
            &self.state,
            &self.vs,
            &self.optimizer,
        )?;
        // Results so far, so a cancelled or lost job still leaves its curves.
        self.write_results()
    }

    /// One float64 `.npy` per per-epoch metric (throughput excepted), all epochs.
    fn write_results(&self) -> Result<(), TrainError> {
        if self.gang.as_ref().is_some_and(|gang| !gang.is_leader()) {
            return Ok(());
        }
        for (name, values) in &self.state.history {
            if name == "samples_per_sec" {
                continue;
            }
            write_atomic(
                &self.job.output_dir.join(result_file(name)),
                &encode_f64(values),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::result_file;

    #[test]
    fn result_files_use_the_seed_protocol_names() {
        assert_eq!(result_file("train_loss"), "train_losses.npy");
        assert_eq!(result_file("test_accuracy"), "test_accuracies.npy");
        assert_eq!(result_file("test_f1"), "test_f1s.npy");
        assert_eq!(result_file("test_mse"), "test_mses.npy");
        assert_eq!(result_file("test_mae"), "test_maes.npy");
        assert_eq!(result_file("test_r2"), "test_r2s.npy");
    }
}
