//! Replaying a candidate counterexample concretely on both networks.

use super::verdict::*;
use super::*;

impl Comparison<'_> {
    /// Evaluates both networks concretely at `x` (rounded to f32).
    pub fn replay(&self, x: &[f64], found_by: FoundBy) -> Counterexample {
        let (net, quantized, reference, options) =
            (self.float, self.quantized, self.reference, self.options);
        let decision = options.decision;
        let input: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let x32: Vec<f64> = input.iter().map(|v| *v as f64).collect();
        let float_logits = net.logits(&x32);
        let float_class = decision.pick(&float_logits);
        let quantized_logits = quantized.logits(&x32);
        let quantized_class = quantized_logits.class(decision);
        let dequantized = quantized.dequantized(&quantized_logits);
        let deviation = |reference: &[f64]| {
            reference
                .iter()
                .zip(&dequantized)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max)
        };
        let max_abs_diff = deviation(&float_logits);
        let tract_logits = reference.and_then(|r| r.logits(&input).ok());
        // The float network is the f64 evaluation of its f32 parameters: it alone decides whether
        // the point violates the property. tract's f32 run is recorded as a cross-check only.
        let violated = |logits: &[f64]| match options.equivalence {
            Equivalence::Top1 => decision.pick(logits) != quantized_class,
            Equivalence::Epsilon(eps) => deviation(logits) > eps,
        };
        let reproduces_in_f32 = violated(&float_logits);
        let tract_agrees = tract_logits.as_ref().map(|t| {
            let t: Vec<f64> = t.iter().map(|v| *v as f64).collect();
            violated(&t) == reproduces_in_f32
        });
        let saturation = match quantized {
            Quantized::Integer(int) => Saturation::at(net, &int.largest_activations(), &x32),
            Quantized::Paper(_) => None,
        };
        Counterexample {
            saturation,
            reproduces_in_f32,
            tract_agrees,
            max_abs_diff,
            input,
            float_logits,
            float_class,
            tract_logits,
            quantized_logits,
            quantized_class,
            found_by,
        }
    }
}
