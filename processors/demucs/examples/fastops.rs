//! Side-by-side timings of roar-demucs' fused CPU kernels and candle's equivalents.
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};

fn t<F: FnMut()>(name: &str, mut f: F) {
    f();
    let s = Instant::now();
    for _ in 0..5 {
        f();
    }
    println!("{name:32} {:8.1} ms", s.elapsed().as_secs_f64() * 1e3 / 5.0);
}

fn main() {
    let d = Device::Cpu;
    let g = Tensor::randn(0f32, 1., (512, 96, 336), &d).unwrap();
    let (w, b) = (
        Tensor::ones(96, DType::F32, &d).unwrap(),
        Tensor::zeros(96, DType::F32, &d).unwrap(),
    );
    let theirs = candle_nn::GroupNorm::new(w.clone(), b.clone(), 96, 1, 1e-5).unwrap();
    let ours = roar_demucs::fast::GroupNorm::new(w, b, 1);
    t("candle groupnorm+gelu 16.5M", || {
        theirs.forward(&g).unwrap().gelu_erf().unwrap();
    });
    t("fast groupnorm+gelu 16.5M", || {
        ours.forward(&g, true).unwrap();
    });
    t("candle glu 16.5M", || {
        let c = 48;
        (g.narrow(1, 0, c).unwrap()
            * candle_nn::ops::sigmoid(&g.narrow(1, c, c).unwrap()).unwrap())
        .unwrap();
    });
    t("fast glu 16.5M", || {
        roar_demucs::fast::glu(&g).unwrap();
    });
    let a = Tensor::randn(0f32, 1., (8, 2688, 2688), &d).unwrap();
    t("candle softmax 58M", || {
        candle_nn::ops::softmax_last_dim(&a).unwrap();
    });
    t("fast softmax 58M", || {
        roar_demucs::fast::softmax_last_dim(&a).unwrap();
    });
}
