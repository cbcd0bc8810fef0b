//! The libtorch smoke test: the set-up links a working libtorch (a tensor op and one
//! optimizer step on CPU), before any of the trainer's own machinery is involved.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn a_tensor_op_and_one_optimizer_step_work_on_cpu() {
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let b = Tensor::from_slice(&[4.0f32, 5.0, 6.0]);
    let dot = (&a * &b).sum(Kind::Float).double_value(&[]);
    assert_eq!(dot, 32.0);

    tch::manual_seed(0);
    let store = nn::VarStore::new(Device::Cpu);
    let layer = nn::linear(store.root(), 3, 1, Default::default());
    let mut optimizer = nn::Sgd::default().build(&store, 0.1).expect("optimizer");
    let x = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).view([1, 3]);
    let loss = |layer: &nn::Linear| layer.forward(&x).pow_tensor_scalar(2).sum(Kind::Float);
    let before = loss(&layer).double_value(&[]);
    optimizer.backward_step(&loss(&layer));
    let after = loss(&layer).double_value(&[]);
    assert!(
        after < before,
        "one SGD step lowers the loss ({before} -> {after})"
    );
}
