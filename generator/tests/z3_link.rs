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
