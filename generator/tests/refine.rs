//! The CEG4N loop on the bundled iris model: what it reports as verified is proved again
//! independently, boxes no quantized network can match are excluded with a witness, and the
//! result depends only on the seed.

mod common;

use std::time::Duration;

use ceg4n::data::load_properties;
use ceg4n::onnx_import::import_path;
use ceg4n::refine::{refine, RefineOptions, Refinement, Search, Silent};
use ceg4n::task::Task;
use ceg4n::verify::{verify_boxes, Quantized, Status, VerifyOptions};
use common::*;

fn iris_task(props: &str) -> Task {
    let model = model_file("iris_mlp.onnx");
    let net = import_path(&model).unwrap();
    let props = load_properties(&model_file(props), net.input_len()).unwrap();
    Task::new(&model, net, props)
}

fn options(search: Search, seed: u64) -> RefineOptions {
    RefineOptions {
        search,
        seed,
        time_limit: Duration::from_secs(120),
        max_rounds: 20,
        verify: VerifyOptions {
            timeout: Duration::from_secs(20),
            ..VerifyOptions::default()
        },
        jobs: 2,
        per_channel: None,
        uniform_input: false,
        min_agreement: ceg4n::refine::DEFAULT_MIN_AGREEMENT,
    }
}

fn run(task: &Task, search: Search, seed: u64) -> Refinement {
    refine(task, &options(search, seed), &Silent).unwrap()
}

#[test]
fn a_verified_result_is_proved_again_from_scratch_at_the_reported_bits() {
    let task = iris_task("iris_props.json");
    for search in [Search::Descent, Search::Genetic] {
        let r = run(&task, search, 1);
        assert!(r.verified, "{search:?}: {:?}", r.stop);
        assert!(r.excluded.is_empty());
        let config = r.config.clone().unwrap();
        assert!(config.weight_bits.iter().all(|b| *b < 16), "{config:?}");
        assert_eq!(r.boxes.len(), task.props.len());
        assert!(r.boxes.iter().all(|b| b.status == Status::Proved));
        let int_net = task.quantize(&config).unwrap();
        let again = verify_boxes(
            &task.net,
            Quantized::Integer(&int_net),
            None,
            &task.props,
            &VerifyOptions::default(),
            2,
        );
        assert!(
            again.iter().all(|v| v.status == Status::Proved),
            "{search:?} {config:?}: {again:?}"
        );
    }
}

#[test]
fn same_seed_same_result() {
    let task = iris_task("iris_props.json");
    for search in [Search::Descent, Search::Genetic] {
        let (a, b) = (run(&task, search, 7), run(&task, search, 7));
        assert_eq!(a.config, b.config, "{search:?}");
        assert_eq!(a.verifier_calls, b.verifier_calls, "{search:?}");
        assert_eq!(a.rounds.len(), b.rounds.len(), "{search:?}");
    }
}

#[test]
fn boxes_the_float_boundary_crosses_are_excluded_with_a_witness() {
    let task = iris_task("iris_boundary_props.json");
    let r = run(&task, Search::Descent, 0);
    assert!(
        !r.excluded.is_empty(),
        "box 1 sits on a float decision boundary"
    );
    for e in &r.excluded {
        let prop = task.props.iter().find(|p| p.id == e.id).unwrap();
        let x: Vec<f64> = e.witness.iter().map(|v| *v as f64).collect();
        assert!(x
            .iter()
            .zip(&prop.lower)
            .zip(&prop.upper)
            .all(|((v, l), u)| v >= l && v <= u));
        assert_eq!(task.net.classify(&x), e.witness_class);
        assert_eq!(task.net.classify(&prop.x), e.centre_class);
        if e.witness_class == e.centre_class {
            // Excluded because even the widest integer network disagrees at the witness.
            assert!(e.reason.contains("16 bits"), "{}", e.reason);
            let widest = ceg4n::quantize::QuantConfig::for_network(
                &task.net,
                &[16],
                &[16],
                16,
                false,
                false,
            )
            .unwrap();
            let int_net = task.quantize(&widest).unwrap();
            assert_ne!(int_net.classify(&x), e.witness_class, "{}", e.id);
        } else {
            assert!(e.reason.contains("boundary"), "{}", e.reason);
        }
    }
    // The remaining boxes are proved.
    assert!(r.verified, "{:?}", r.stop);
    assert_eq!(r.boxes.len() + r.excluded.len(), task.props.len());
}
