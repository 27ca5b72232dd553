//! Proves that the provisioned libz3 links and answers real queries.

use z3::ast::Int;
use z3::{SatResult, Solver};

#[test]
fn z3_solves_and_refutes_linear_integer_queries() {
    let solver = Solver::new();
    let x = Int::new_const("x");
    let y = Int::new_const("y");
    solver.assert((&x + &y).eq(Int::from_i64(10)));
    solver.assert(x.gt(&y));
    solver.assert(y.ge(Int::from_i64(3)));
    assert_eq!(solver.check(), SatResult::Sat);
    let model = solver.get_model().unwrap();
    let xv = model.eval(&x, true).unwrap().as_i64().unwrap();
    let yv = model.eval(&y, true).unwrap().as_i64().unwrap();
    assert_eq!(xv + yv, 10);
    assert!(xv > yv && yv >= 3);

    solver.assert(x.lt(Int::from_i64(6)));
    assert_eq!(solver.check(), SatResult::Unsat);
}

#[test]
fn the_linked_z3_is_modern_enough() {
    // Older system copies (Debian's 4.8) lack functions the z3 crate calls.
    let full = z3::full_version();
    let numbers: Vec<u32> = full
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        numbers.len() == 2 && (numbers[0], numbers[1]) >= (4, 13),
        "linked {full}"
    );
}
