//! The learning rate at a point of training: a linear warm-up over the first
//! `warmup_epochs` (per step), then constant, step decay (per epoch) or cosine decay
//! (per step). A pure function of the position, so a resumed run needs no state.

use expcluster_core::trainer_spec::ScheduleSpec;

/// The learning rate for step `step` (0-based) of epoch `epoch` (0-based).
pub fn learning_rate(
    schedule: &ScheduleSpec,
    base: f64,
    epochs: usize,
    epoch: usize,
    step: usize,
    steps_per_epoch: usize,
) -> f64 {
    let steps_per_epoch = steps_per_epoch.max(1);
    let position = (epoch * steps_per_epoch + step) as f64;
    let warmup = (schedule.warmup_epochs() * steps_per_epoch) as f64;
    if position < warmup {
        return base * (position + 1.0) / warmup;
    }
    match schedule {
        ScheduleSpec::Constant { .. } => base,
        ScheduleSpec::Step {
            step_size, gamma, ..
        } => base * gamma.powi((epoch / step_size.max(&1)) as i32),
        ScheduleSpec::Cosine { min_factor, .. } => {
            let total = (epochs * steps_per_epoch) as f64 - warmup;
            let progress = if total > 0.0 {
                (position - warmup) / total
            } else {
                1.0
            };
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
            base * (min_factor + (1.0 - min_factor) * cosine)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let step = ScheduleSpec::Step {
            warmup_epochs: 1,
            step_size: 2,
            gamma: 0.5,
        };
        assert!((learning_rate(&step, 1.0, 6, 0, 0, 4) - 0.25).abs() < 1e-12);
        assert!((learning_rate(&step, 1.0, 6, 0, 3, 4) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&step, 1.0, 6, 2, 0, 4) - 0.5).abs() < 1e-12);
        assert!((learning_rate(&step, 1.0, 6, 5, 0, 4) - 0.25).abs() < 1e-12);
        let cosine = ScheduleSpec::Cosine {
            warmup_epochs: 0,
            min_factor: 0.1,
        };
        assert!((learning_rate(&cosine, 1.0, 4, 0, 0, 10) - 1.0).abs() < 1e-12);
        let end = learning_rate(&cosine, 1.0, 4, 3, 9, 10);
        assert!(end > 0.1 && end < 0.11, "{end}");
    }
}
