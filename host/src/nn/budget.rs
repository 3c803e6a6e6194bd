//! Host memory one instance holds through `wasi:nn`, counted against a budget.
//!
//! A guest's `tensor::new` copies its bytes into the host; `compute` hands back outputs the
//! engine allocated; `load` compiles a graph from bytes it handed over. All stay in the host until
//! the guest drops them or its instance ends, so each instance may hold only so many bytes of them
//! (by default its component's memory limit). A graph loaded from bytes is charged its model's
//! size for the rest of the instance's life, even once dropped, as an execution context may still
//! hold it.

/// Bytes of tensors an instance holds, and how many it may.
#[derive(Debug)]
pub struct TensorBudget {
    limit: usize,
    held: usize,
}

/// Taking more would exceed the budget.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{asked} more bytes of wasi:nn tensors and graphs would make this instance hold {} bytes, over its budget of {limit} (nn_memory_limit_mib)", held.saturating_add(*asked))]
pub struct OverBudget {
    /// The budget.
    pub limit: usize,
    /// Bytes held before.
    pub held: usize,
    /// Bytes asked for.
    pub asked: usize,
}

impl TensorBudget {
    /// An empty budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, held: 0 }
    }

    /// Counts `bytes` more, if they fit.
    pub fn take(&mut self, bytes: usize) -> Result<(), OverBudget> {
        match self.held.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.held = total;
                Ok(())
            }
            _ => Err(OverBudget { limit: self.limit, held: self.held, asked: bytes }),
        }
    }

    /// Counts `bytes` less (a tensor dropped or consumed).
    pub fn give_back(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes);
    }

    /// Bytes that may still be taken.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.held)
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_what_fits_and_gets_it_back() {
        let mut budget = TensorBudget::new(100);
        budget.take(60).unwrap();
        assert_eq!(budget.take(41), Err(OverBudget { limit: 100, held: 60, asked: 41 }));
        assert_eq!(budget.held(), 60, "a refusal takes nothing");
        budget.take(40).unwrap();
        budget.give_back(70);
        assert_eq!(budget.held(), 30);
        assert!(budget.take(usize::MAX).is_err(), "no overflow");
        budget.give_back(1000);
        assert_eq!(budget.held(), 0);
    }
}
