//! How much memory a graph a guest handed over as bytes makes its engine allocate, worked out
//! from its shapes before it runs.
//!
//! Engines allocate every intermediate tensor themselves, out of reach of any budget: a 32 KiB
//! input into a `MatMul` of `[n, 1]` by `[1, n]` asks for `n²` floats. So a graph from guest
//! bytes is typed once, at load, with tract's shape inference (whichever engine then runs it):
//! every tensor's size becomes an expression of the inputs' dimensions. A graph where some size
//! depends on the *values* of a tensor (`ConstantOfShape` of a computed shape, `NonZero`,
//! `Range`, a data-driven `Loop`) has no such expression and is refused unless the component
//! allows it (`allow_dynamic_shapes`). Before each compute the expressions are evaluated for the
//! actual inputs, walking the nodes in order and freeing each tensor after its last use, and a
//! peak above the instance's budget is refused before the engine sees the inputs.
//!
//! The figure is tract's plan of the graph, not any engine's exact allocations: scratch space
//! inside a kernel (im2col buffers, ONNX Runtime's arena rounding) comes on top, within a small
//! factor of the tensors it works on.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tract_onnx::prelude::*;

/// Why a graph from guest bytes was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    /// Some tensor's size depends on values computed at run time.
    #[error(
        "the size of '{tensor}' depends on values computed at run time, so the host cannot bound the memory it takes; models handed over as bytes must have sizes that follow from their inputs' shapes (or the component sets allow_dynamic_shapes)"
    )]
    DataDependent {
        /// The first such tensor.
        tensor: String,
    },
    /// tract could not work out the graph's shapes.
    #[error(
        "the host cannot work out the sizes of this model's tensors, so it cannot bound the memory it takes (or the component sets allow_dynamic_shapes): {0}"
    )]
    Untyped(String),
}

/// Why a compute was refused before it ran.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeakError {
    /// The engine would hold more than the budget at some point.
    #[error(
        "running this graph on these inputs would hold {peak} bytes of tensors at once, over this instance's budget of {limit} bytes (nn_memory_limit_mib)"
    )]
    OverBudget {
        /// Bytes at the peak.
        peak: u128,
        /// The budget.
        limit: usize,
    },
    /// An input's shape does not fit what the graph declares.
    #[error("input '{0}' does not have the shape the model declares")]
    Shape(String),
    /// An input the graph takes was not handed over.
    #[error("missing input '{0}'")]
    Missing(String),
    /// Some tensor's size does not come out as a number for these inputs (an input missing, or
    /// a size past 2⁶³), so the compute is refused rather than left unchecked.
    #[error("the size of the graph's tensors cannot be worked out for these inputs")]
    Unbounded,
}

/// A graph's tensors as sizes in terms of its inputs' dimensions, in evaluation order.
pub struct Footprint {
    /// Per input (by name): the symbol each axis binds, if it is one.
    inputs: Vec<(String, Vec<Option<Symbol>>)>,
    /// Per tensor the engine allocates: its dimensions and bytes per element.
    tensors: Vec<(Vec<TDim>, usize)>,
    /// Per step: the tensors it allocates, then the ones no later step reads.
    steps: Vec<(Vec<usize>, Vec<usize>)>,
    /// Peaks already worked out, by the shapes of the inputs in the graph's order.
    peaks: Mutex<HashMap<Vec<Option<Vec<u32>>>, u128>>,
}

/// Peaks kept per graph; past it the record starts over.
const MAX_PEAKS: usize = 64;

impl Footprint {
    /// Types `model` and records every tensor's size, or says why it cannot be bounded.
    pub fn of_onnx(model: &[u8]) -> Result<Self, FootprintError> {
        let untyped = |e: TractError| FootprintError::Untyped(format!("{e:#}"));
        let inference = tract_onnx::onnx().model_for_read(&mut &model[..]).map_err(untyped)?;
        let typed = inference.into_typed().and_then(|m| m.into_decluttered()).map_err(untyped)?;
        Self::of_typed(&typed)
    }

    fn of_typed(model: &TypedModel) -> Result<Self, FootprintError> {
        let untyped = |e: TractError| FootprintError::Untyped(format!("{e:#}"));
        let mut inputs = Vec::new();
        let mut known = HashSet::new();
        for &outlet in model.input_outlets().map_err(untyped)? {
            let name = model.outlet_label(outlet).map(str::to_owned).unwrap_or_else(|| model.node(outlet.node).name.clone());
            let fact = model.outlet_fact(outlet).map_err(untyped)?;
            let axes = fact
                .shape
                .iter()
                .map(|d| match d {
                    TDim::Sym(s) => {
                        known.insert(s.clone());
                        Some(s.clone())
                    }
                    _ => None,
                })
                .collect();
            inputs.push((name, axes));
        }
        let order = model.eval_order().map_err(untyped)?;
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(at, &node)| (node, at)).collect();
        let kept: HashSet<OutletId> = model.output_outlets().map_err(untyped)?.iter().copied().collect();
        // Where each tensor is read last; model outputs live to the end.
        let mut last_read: HashMap<OutletId, usize> = HashMap::new();
        for (at, &node) in order.iter().enumerate() {
            for input in &model.node(node).inputs {
                let read = last_read.entry(*input).or_insert(at);
                *read = (*read).max(at);
            }
        }
        let mut tensors = Vec::new();
        let mut steps: Vec<(Vec<usize>, Vec<usize>)> = vec![(Vec::new(), Vec::new()); order.len()];
        for (at, &node) in order.iter().enumerate() {
            let node = model.node(node);
            // The inputs are counted as the guest's tensors and the weights as the model's bytes;
            // every other node allocates, even one without inputs (`RandomUniform`).
            if node.op_is::<tract_onnx::tract_core::ops::source::TypedSource>() || node.op_is::<tract_onnx::tract_core::ops::konst::Const>()
            {
                continue;
            }
            for (slot, output) in node.outputs.iter().enumerate() {
                let outlet = OutletId::new(node.id, slot);
                let volume = output.fact.shape.volume();
                if volume.symbols().iter().any(|s| !known.contains(s)) {
                    let tensor = model.outlet_label(outlet).map(str::to_owned).unwrap_or_else(|| node.name.clone());
                    return Err(FootprintError::DataDependent { tensor });
                }
                steps[at].0.push(tensors.len());
                tensors.push((output.fact.shape.iter().cloned().collect(), output.fact.datum_type.size_of()));
                let freed_at = if kept.contains(&outlet) { None } else { last_read.get(&outlet).copied().or(Some(at)) };
                if let Some(freed_at) = freed_at {
                    steps[freed_at.max(position[&node.id])].1.push(tensors.len() - 1);
                }
            }
        }
        Ok(Self { inputs, tensors, steps, peaks: Mutex::default() })
    }

    /// The most bytes of intermediate and output tensors held at once when running on inputs of
    /// these shapes (by input name; ones the graph does not have are ignored).
    pub fn peak(&self, inputs: &[(&str, &[u32])]) -> Result<u128, PeakError> {
        let shapes: Vec<Option<Vec<u32>>> =
            self.inputs.iter().map(|(name, _)| inputs.iter().find(|(n, _)| n == name).map(|(_, dims)| dims.to_vec())).collect();
        if let Some(&peak) = self.peaks.lock().unwrap_or_else(|e| e.into_inner()).get(&shapes) {
            return Ok(peak);
        }
        let mut values = SymbolValues::default();
        for ((name, axes), dims) in self.inputs.iter().zip(&shapes) {
            let Some(dims) = dims else { return Err(PeakError::Missing(name.clone())) };
            if dims.len() != axes.len() {
                return Err(PeakError::Shape(name.clone()));
            }
            for (symbol, &dim) in axes.iter().zip(dims.iter()) {
                let Some(symbol) = symbol else { continue };
                // Two inputs may not give one symbol two sizes (ONNX Runtime would not check).
                match values.get(symbol) {
                    Some(bound) if bound != i64::from(dim) => return Err(PeakError::Shape(name.clone())),
                    _ => values.set(symbol, i64::from(dim)),
                }
            }
        }
        // tract's expression evaluation is not meant for hostile input: a panic there refuses.
        let sizes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.sizes(&values))).map_err(|_| PeakError::Unbounded)??;
        let (mut held, mut peak) = (0u128, 0u128);
        for (allocated, freed) in &self.steps {
            held = held.saturating_add(allocated.iter().fold(0u128, |sum, &t| sum.saturating_add(sizes[t])));
            peak = peak.max(held);
            held = held.saturating_sub(freed.iter().fold(0u128, |sum, &t| sum.saturating_add(sizes[t])));
        }
        let mut peaks = self.peaks.lock().unwrap_or_else(|e| e.into_inner());
        if peaks.len() >= MAX_PEAKS {
            peaks.clear();
        }
        peaks.insert(shapes, peak);
        Ok(peak)
    }

    /// Every tensor's bytes for these symbol values; a size that is not a number refuses.
    fn sizes(&self, values: &SymbolValues) -> Result<Vec<u128>, PeakError> {
        self.tensors
            .iter()
            .map(|(dims, size)| {
                dims.iter().try_fold(*size as u128, |bytes, dim| {
                    let n = dim.eval_to_i64(values).map_err(|_| PeakError::Unbounded)?;
                    Ok(bytes.saturating_mul(n.max(0) as u128))
                })
            })
            .collect()
    }

    /// Refuses inputs on which the graph would hold more than `limit` bytes at once.
    pub fn check(&self, inputs: &[(&str, &[u32])], limit: usize) -> Result<(), PeakError> {
        let peak = self.peak(inputs)?;
        if peak > limit as u128 {
            return Err(PeakError::OverBudget { peak, limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::onnx_bytes;

    #[test]
    fn peak_is_worked_out_before_the_engine_runs() {
        // 8 KiB in, 4 MiB out.
        let footprint = Footprint::of_onnx(&onnx_bytes::outer_product(1024)).unwrap();
        let shapes: [(&str, &[u32]); 2] = [("a", &[1024, 1]), ("b", &[1, 1024])];
        assert_eq!(footprint.peak(&shapes), Ok(4 << 20));
        assert_eq!(footprint.check(&shapes, 1 << 20), Err(PeakError::OverBudget { peak: 4 << 20, limit: 1 << 20 }));
        assert!(footprint.check(&shapes, 4 << 20).is_ok());
        assert_eq!(footprint.peak(&[("a", &[1024]), ("b", &[1, 1024])]), Err(PeakError::Shape("a".into())));
    }

    #[test]
    fn sizes_chosen_by_values_are_refused() {
        let err = Footprint::of_onnx(&onnx_bytes::constant_of_shape()).err().expect("refused");
        assert!(matches!(err, FootprintError::DataDependent { .. } | FootprintError::Untyped(_)), "{err}");
    }

    #[test]
    fn peak_follows_the_inputs_shapes() {
        let cifar10 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/cifar10/model.onnx")).unwrap();
        let footprint = Footprint::of_onnx(&cifar10).unwrap();
        let one = footprint.peak(&[("input", &[1, 32, 32, 3])]).unwrap();
        let eight = footprint.peak(&[("input", &[8, 32, 32, 3])]).unwrap();
        assert!(one > 4 * 3072 && one < 4 << 20, "{one}");
        assert_eq!(eight, 8 * one);
    }
}
