//! The CEG4N loop on the bundled iris model: what it reports as verified is proved again
//! independently, boxes no quantized network can match are excluded with a witness, and the
//! result depends only on the seed.

mod common;

use std::time::Duration;

use ceg4n::data::load_properties;
use ceg4n::onnx_import::import_path;
use ceg4n::refine::{refine, ExclusionReason, RefineOptions, Refinement, Search, Silent};
use ceg4n::task::Task;
use ceg4n::verify::{Comparison, Quantized, Status, VerifyOptions};
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
        let options = VerifyOptions::default();
        let again = Comparison::new(&task.net, Quantized::Integer(&int_net), &options)
            .verify_boxes(&task.props, 2);
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
            assert!(
                matches!(
                    e.reason,
                    ExclusionReason::WidestDisagrees | ExclusionReason::Saturates
                ),
                "{e:?}"
            );
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
            assert_eq!(e.reason, ExclusionReason::FloatBoundary);
        }
    }
    // The remaining boxes are proved.
    assert!(r.verified, "{:?}", r.stop);
    assert_eq!(r.boxes.len() + r.excluded.len(), task.props.len());
}

/// The bundled digits model with its 10 boxes around 5 test rows: refined on the boxes alone,
/// its accuracy collapses; with the test rows as data, the floor holds.
#[test]
fn the_fidelity_floor_keeps_accuracy_where_boxes_alone_lose_it() {
    use ceg4n::data::Dataset;
    use ceg4n::refine::accuracy;
    let model = model_file("digits_mlp.onnx");
    let net = import_path(&model).unwrap();
    let props = load_properties(&model_file("digits_props.json"), net.input_len()).unwrap();
    let data = Dataset::load_csv(&model_file("digits_test.csv"), net.input_len()).unwrap();
    let decision = ceg4n::verify::Decision::ArgMax;
    let boxes_only = Task::new(&model, net.clone(), props.clone());
    let r = refine(&boxes_only, &options(Search::Descent, 0), &Silent).unwrap();
    let a = accuracy(
        &boxes_only,
        r.config.as_ref().unwrap(),
        &data,
        0.99,
        &[],
        decision,
    )
    .unwrap();
    assert!(
        a.agreement < 0.9,
        "storage-only refinement should lose agreement here (the test is void otherwise): {a:?}"
    );
    let with_data = Task::with_data(&model, net, props, Some(data.clone()));
    let r = refine(&with_data, &options(Search::Descent, 0), &Silent).unwrap();
    assert!(r.verified, "{:?}", r.stop);
    let config = r.config.as_ref().unwrap();
    let a = accuracy(&with_data, config, &data, 0.99, &r.rows_set_aside, decision).unwrap();
    assert!(a.floor_met && a.agreement_counted >= 0.99, "{a:?}");
    assert!(a.quantized >= a.float - 0.01, "{a:?}");
    // A report can never say verified below the floor: at 1.0 every counted row agrees.
    let mut strict = options(Search::Descent, 0);
    strict.min_agreement = 1.0;
    let r = refine(&with_data, &strict, &Silent).unwrap();
    let a = accuracy(
        &with_data,
        r.config.as_ref().unwrap(),
        &data,
        1.0,
        &r.rows_set_aside,
        decision,
    )
    .unwrap();
    assert_eq!(r.verified, a.floor_met && r.config.is_some(), "{a:?}");
    if r.verified {
        assert_eq!(a.agreement_counted, 1.0, "{a:?}");
    }
}

/// The search ends with a usable answer: the 8-bit anchor is proved first, and a tiny time
/// limit still ends with it (or with nothing verified, never with an unproved claim).
#[test]
fn the_anchor_is_proved_first_and_time_limits_hold() {
    let task = iris_task("iris_props.json");
    let r = run(&task, Search::Descent, 0);
    let first = &r.rounds[0];
    assert_eq!(first.weight_bits, vec![8; 3]);
    assert_eq!(first.activation_bits, vec![8; 2]);
    assert_eq!(first.proved, task.props.len());
    let mut tight = options(Search::Descent, 0);
    tight.time_limit = Duration::from_millis(300);
    let start = std::time::Instant::now();
    let r = refine(&task, &tight, &Silent).unwrap();
    // The limit is on wall time; screening between rounds adds little.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    if r.verified {
        assert!(r.boxes.iter().all(|b| b.status == Status::Proved));
    }
}
