//! Load-time proof that kernel calls cannot alias: the precondition of `KernelArgs::new`.
//!
//! A `MoveCall` makes two values share a tensor, so which tensors a value may hold is computed as a
//! fixpoint over all moves ("may point to"). Then, for every call, each writable position's tensors
//! must differ from — and not overlap in memory — the tensors of every other position, and must not
//! be constants. A program that breaks this is refused at load, so the instruction loop needs no
//! checks.

use std::collections::BTreeSet;

use etch_kernels::{EValue, ListPool, NONE_INDEX, TensorId};

/// Where a tensor's bytes are, for overlap tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    /// `start..end` of planned buffer `buffer`.
    Planned { buffer: usize, start: u64, end: u64 },
    /// Read-only program bytes (never written; reading them twice is fine).
    Constant,
    /// Memory only this tensor uses (e.g. an input buffer), or no memory at all.
    Private,
}

impl Region {
    fn overlaps(&self, other: &Region) -> bool {
        match (self, other) {
            (Region::Planned { buffer: a, start: s1, end: e1 }, Region::Planned { buffer: b, start: s2, end: e2 }) => {
                a == b && s1 < e1 && s2 < e2 && s1 < e2 && s2 < e1
            }
            _ => false,
        }
    }
}

/// One call to check: its argument value indices and writable positions.
pub(crate) struct Call<'a> {
    pub args: &'a [u32],
    pub writable: u64,
}

/// The tensors each value may hold after any sequence of moves.
pub(crate) struct PointsTo {
    tensors: Vec<BTreeSet<TensorId>>,
    /// List values (by original value index) each value may hold.
    lists: Vec<BTreeSet<u32>>,
    /// Storage class of each tensor (see [`PointsTo::with_storage`]); empty: every tensor is its own.
    storage: Vec<TensorId>,
}

impl PointsTo {
    pub(crate) fn new(values: &[EValue], moves: &[(u32, u32)]) -> PointsTo {
        let mut tensors: Vec<BTreeSet<TensorId>> = values
            .iter()
            .map(|v| match v {
                EValue::Tensor(id) => BTreeSet::from([*id]),
                _ => BTreeSet::new(),
            })
            .collect();
        let mut lists: Vec<BTreeSet<u32>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                EValue::TensorList(_) | EValue::OptionalTensorList(_) => BTreeSet::from([i as u32]),
                _ => BTreeSet::new(),
            })
            .collect();
        // Fixpoint: each round can only grow the sets, which are bounded, so this terminates.
        loop {
            let mut changed = false;
            for &(from, to) in moves {
                let (f, t) = (from as usize, to as usize);
                if f == t || f >= tensors.len() || t >= tensors.len() {
                    continue;
                }
                let add: Vec<TensorId> = tensors[f].difference(&tensors[t]).copied().collect();
                changed |= !add.is_empty();
                tensors[t].extend(add);
                let add: Vec<u32> = lists[f].difference(&lists[t]).copied().collect();
                changed |= !add.is_empty();
                lists[t].extend(add);
            }
            if !changed {
                break;
            }
        }
        PointsTo { tensors, lists, storage: Vec::new() }
    }

    /// The same sets over storage classes: a tensor the exporter placed as a view of another (same
    /// bytes, no instruction of its own) stands for its class's representative `storage[t]`, so
    /// the dependency analysis sees the view's reads as reads of what the base's writer wrote.
    pub(crate) fn with_storage(mut self, storage: Vec<TensorId>) -> PointsTo {
        for set in &mut self.tensors {
            *set = set.iter().map(|t| storage.get(t.0 as usize).copied().unwrap_or(*t)).collect();
        }
        self.storage = storage;
        self
    }

    /// The representative of `t`'s storage class.
    pub(crate) fn canonical(&self, t: TensorId) -> TensorId {
        self.storage.get(t.0 as usize).copied().unwrap_or(t)
    }

    /// How many of the `tensor_count` tensors each class representative stands for (1 for a
    /// tensor no view shares).
    pub(crate) fn class_sizes(&self, tensor_count: usize) -> Vec<u32> {
        let mut sizes = vec![0u32; tensor_count];
        for t in 0..tensor_count {
            if let Some(c) = sizes.get_mut(self.canonical(TensorId(t as u32)).0 as usize) {
                *c += 1;
            }
        }
        sizes
    }

    /// `overlaps` (per tensor, the tensors sharing its bytes) over storage classes.
    pub(crate) fn canonical_overlaps(&self, overlaps: Vec<Vec<TensorId>>) -> Vec<Vec<TensorId>> {
        if self.storage.is_empty() {
            return overlaps;
        }
        let mut out = vec![Vec::new(); overlaps.len()];
        for (t, list) in overlaps.iter().enumerate() {
            let c = self.canonical(TensorId(t as u32));
            if let Some(slot) = out.get_mut(c.0 as usize) {
                slot.extend(list.iter().map(|&o| self.canonical(o)).filter(|&o| o != c));
            }
        }
        for list in &mut out {
            list.sort_unstable();
            list.dedup();
        }
        out
    }

    /// Tensors a value may hold directly or as items of a list it may hold.
    pub(crate) fn position_tensors(&self, value: u32, values: &[EValue], pool: &ListPool) -> BTreeSet<TensorId> {
        let v = value as usize;
        let mut out = self.tensors.get(v).cloned().unwrap_or_default();
        for &list in self.lists.get(v).into_iter().flatten() {
            let span = match values.get(list as usize) {
                Some(EValue::TensorList(s) | EValue::OptionalTensorList(s)) => *s,
                _ => continue,
            };
            for &item in pool.indices(span) {
                if item != NONE_INDEX {
                    out.extend(self.tensors.get(item as usize).into_iter().flatten().copied());
                }
            }
        }
        out
    }

    /// Whether value `v` may hold a list whose items are written as separate outputs.
    fn list_items(&self, value: u32, values: &[EValue], pool: &ListPool) -> Vec<BTreeSet<TensorId>> {
        let mut items = Vec::new();
        for &list in self.lists.get(value as usize).into_iter().flatten() {
            if let Some(EValue::TensorList(s) | EValue::OptionalTensorList(s)) = values.get(list as usize) {
                for &item in pool.indices(*s) {
                    if item != NONE_INDEX {
                        items.push(self.tensors.get(item as usize).cloned().unwrap_or_default());
                    }
                }
            }
        }
        items
    }
}

/// Checks one call; `Err` explains the first violation.
pub(crate) fn check_call(
    call: &Call<'_>,
    pt: &PointsTo,
    values: &[EValue],
    pool: &ListPool,
    regions: &[Region],
    writable_tensor: &dyn Fn(TensorId) -> bool,
) -> Result<(), String> {
    let region = |t: &TensorId| regions.get(t.0 as usize).copied().unwrap_or(Region::Private);
    let positions: Vec<BTreeSet<TensorId>> = call.args.iter().map(|&v| pt.position_tensors(v, values, pool)).collect();
    for (w, wset) in positions.iter().enumerate() {
        if w >= 64 || call.writable & (1u64 << w) == 0 {
            continue;
        }
        for t in wset {
            if !writable_tensor(*t) {
                return Err(format!("argument {w} writes a constant tensor"));
            }
        }
        // Items of one written list must be distinct and disjoint.
        let items = pt.list_items(call.args[w], values, pool);
        for (i, a) in items.iter().enumerate() {
            for b in &items[i + 1..] {
                for x in a {
                    for y in b {
                        if x == y || region(x).overlaps(&region(y)) {
                            return Err(format!("argument {w}: two output list items share memory"));
                        }
                    }
                }
            }
        }
        for (q, qset) in positions.iter().enumerate() {
            if q == w {
                continue;
            }
            for x in wset {
                for y in qset {
                    if x == y || region(x).overlaps(&region(y)) {
                        return Err(format!(
                            "argument {w} is written while argument {q} uses the same memory (tensors {} and {})",
                            x.0, y.0
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_propagate_transitively() {
        let values = vec![EValue::Tensor(TensorId(0)), EValue::Tensor(TensorId(1)), EValue::None];
        let pt = PointsTo::new(&values, &[(1, 2), (0, 1)]);
        let pool = ListPool::default();
        let got = pt.position_tensors(2, &values, &pool);
        assert_eq!(got, BTreeSet::from([TensorId(0), TensorId(1)]));
    }

    #[test]
    fn overlapping_output_is_refused() {
        let values = vec![EValue::Tensor(TensorId(0)), EValue::Tensor(TensorId(1))];
        let regions =
            [Region::Planned { buffer: 0, start: 0, end: 16 }, Region::Planned { buffer: 0, start: 8, end: 24 }];
        let pt = PointsTo::new(&values, &[]);
        let pool = ListPool::default();
        let call = Call { args: &[0, 1], writable: 0b10 };
        assert!(check_call(&call, &pt, &values, &pool, &regions, &|_| true).is_err());
        let disjoint =
            [Region::Planned { buffer: 0, start: 0, end: 8 }, Region::Planned { buffer: 0, start: 8, end: 24 }];
        assert!(check_call(&call, &pt, &values, &pool, &disjoint, &|_| true).is_ok());
        assert!(check_call(&call, &pt, &values, &pool, &disjoint, &|t| t.0 != 1).is_err());
        // The same tensor read and written.
        let call = Call { args: &[0, 0], writable: 0b10 };
        assert!(check_call(&call, &pt, &values, &pool, &disjoint, &|_| true).is_err());
    }
}
