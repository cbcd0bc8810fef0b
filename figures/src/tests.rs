//! Figures drawn from a synthetic workspace laid out as the coordinator lays it out.

use crate::{write_all_figures, HEIGHT, WIDTH};
use ndarray::{Array1, Array2};
use ndarray_npy::WriteNpyExt;
use serde_json::json;
use std::path::Path;

const CONFIG: &str = "name: synthetic\nprimary_metric: {name: test_accuracy, goal: max}\nmetrics: [train_loss, test_accuracy]\n\
job:\n  command: [python, runfile.py]\n  params: {hidden: 64}\n\
methods:\n  proposed: {}\n  baseline_linear_with_a_rather_long_descriptive_name: {params.hidden: 0}\n\
ablations:\n  no_l2: {params.hidden: 32}\n  no_dropout: {params.hidden: 16}\n\
stages:\n  implementation: {seeds: 1}\n  baselines: {seeds: 3}\n  ablations: {seeds: 3}\n";

fn save_1d(dir: &Path, name: &str, values: &[f64]) {
    let file = std::fs::File::create(dir.join(name)).expect("create");
    Array1::from(values.to_vec()).write_npy(file).expect("npy");
}

fn save_2d(dir: &Path, name: &str, rows: &[Vec<f64>]) {
    let width = rows[0].len();
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let file = std::fs::File::create(dir.join(name)).expect("create");
    Array2::from_shape_vec((rows.len(), width), flat)
        .expect("shape")
        .write_npy(file)
        .expect("npy");
}

fn synthetic_workspace(root: &Path) {
    std::fs::write(root.join("config.yaml"), CONFIG).expect("config");
    let results = root.join("experiment_results");
    std::fs::create_dir_all(&results).expect("mkdir");
    let mut index = serde_json::Map::new();
    let variants = [
        ("implementation", "proposed", 0.9),
        ("baselines", "proposed", 0.93),
        (
            "baselines",
            "baseline_linear_with_a_rather_long_descriptive_name",
            0.88,
        ),
        ("ablations", "proposed", 0.93),
        ("ablations", "no_l2", 0.91),
        ("ablations", "no_dropout", 0.935),
    ];
    for (stage, variant, level) in variants {
        let seeds = if stage == "implementation" { 1 } else { 3 };
        let finals: Vec<f64> = (0..seeds).map(|seed| level + 0.004 * seed as f64).collect();
        let name = format!("{stage}_{variant}_test_accuracy.npy");
        save_1d(&results, &name, &finals);
        index.insert(name, json!({"stage": stage, "variant": variant, "sweep_point": "base", "metric": "test_accuracy", "kind": "final_per_seed"}));
        let curves: Vec<Vec<f64>> = (0..seeds)
            .map(|seed| {
                (0..15)
                    .map(|step| (1.0 - level) + 2.0 / (step as f64 + 1.0 + seed as f64 * 0.3))
                    .collect()
            })
            .collect();
        let name = format!("{stage}_{variant}_train_loss_curves.npy");
        save_2d(&results, &name, &curves);
        index.insert(name, json!({"stage": stage, "variant": variant, "sweep_point": "base", "metric": "train_loss", "kind": "curves_seeds_by_step"}));
    }
    let bytes = serde_json::to_vec_pretty(&index).expect("json");
    std::fs::write(results.join("index.json"), bytes).expect("index");
}

#[test]
fn every_figure_is_written_at_the_fixed_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    // FIGURES_TEST_OUT keeps the pictures for a person to look at.
    let root =
        std::env::var_os("FIGURES_TEST_OUT").map_or_else(|| dir.path().to_path_buf(), Into::into);
    std::fs::create_dir_all(&root).expect("mkdir");
    synthetic_workspace(&root);
    let written = write_all_figures(&root).expect("figures");
    assert_eq!(
        written,
        [
            "figures/implementation_train_loss_curves.png",
            "figures/implementation_test_accuracy_final.png",
            "figures/baselines_train_loss_curves.png",
            "figures/baselines_test_accuracy_final.png",
            "figures/ablations_train_loss_curves.png",
            "figures/ablations_test_accuracy_final.png",
            "figures/ablation_impact.png",
        ]
    );
    for file in &written {
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(root.join(file)).expect("open"),
        ));
        let reader = decoder.read_info().expect("png header");
        assert_eq!(
            (reader.info().width, reader.info().height),
            (WIDTH, HEIGHT),
            "{file}"
        );
    }
}

#[test]
fn a_workspace_without_results_has_no_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(write_all_figures(dir.path()).expect("no error").is_empty());
    assert!(!dir.path().join("figures").exists());
}
