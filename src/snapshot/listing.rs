//! What a snapshot is made of: each object's listed endpoints, kept as the sorted run the
//! merge resolved for it, shared (not copied) from one snapshot to the next.
//!
//! A Service of 1,000 slices changes one slice at a time. A listing holds one `Arc` per
//! object, so the next listing shares 999 of the previous one's runs, and what changed is
//! found by comparing pointers (see `book.rs`). The flat, de-duplicated endpoints of a
//! listing are made only when a reader asks for them ([`Listing::flatten`]).

use std::cmp::Reverse;
use std::sync::Arc;

use super::{Conditions, Endpoint};

/// Of two endpoints at one address, the one to keep has the higher rank: not terminating
/// (as kube-proxy), else serving.
pub(crate) fn rank(conditions: Conditions) -> (bool, bool) {
    (!conditions.terminating, conditions.serving)
}

/// The order in which endpoints at one address are preferred: the highest rank, then the
/// first in endpoint order. A total order, so the winner of a set is the winner of the
/// winners of its parts: one object's run can be de-duplicated on its own, and an address
/// re-decided from the runs that list it.
pub(crate) fn preference(e: &Endpoint) -> (Reverse<(bool, bool)>, &Endpoint) {
    (Reverse(rank(e.conditions())), e)
}

/// Sort `endpoints` and keep, per address, the one [`preference`] puts first.
pub(crate) fn sort_and_dedup(endpoints: &mut Vec<Endpoint>) {
    // Concatenated runs are sorted runs: the adaptive sort merges them in about linear time.
    endpoints.sort();
    endpoints.dedup_by(|later, kept| {
        if later.addr() != kept.addr() {
            return false;
        }
        if preference(later) < preference(kept) {
            std::mem::swap(later, kept);
        }
        true
    });
}

/// One object's listed endpoints for a port: sorted, one per address.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// The object's name: runs are matched by it from one listing to the next.
    pub name: Arc<str>,
    pub endpoints: Arc<[Endpoint]>,
}

impl Run {
    /// The entry of this run at `addr`, if any.
    pub(crate) fn at(&self, addr: std::net::SocketAddr) -> Option<&Endpoint> {
        let i = self.endpoints.partition_point(|e| e.addr() < addr);
        self.endpoints.get(i).filter(|e| e.addr() == addr)
    }
}

/// The listed endpoints (ready or terminating) of a Service for one port, as one run per
/// object, ordered by object name, without empty runs. Cheap to clone.
///
/// Not a stable API (reached through the `fuzzing` feature, for benchmarks).
#[derive(Clone, Debug, Default)]
pub struct Listing(Arc<[Run]>);

impl Listing {
    /// A listing of `runs`, which must be ordered by name, each sorted and one per address.
    pub(crate) fn of_runs(runs: Vec<Run>) -> Listing {
        debug_assert!(runs.windows(2).all(|w| w[0].name < w[1].name));
        Listing(
            runs.into_iter()
                .filter(|r| !r.endpoints.is_empty())
                .collect(),
        )
    }

    pub(crate) fn runs(&self) -> &[Run] {
        &self.0
    }

    /// How many endpoints the runs hold together (an address listed twice counts twice).
    pub(crate) fn entries(&self) -> usize {
        self.0.iter().map(|r| r.endpoints.len()).sum()
    }

    /// The listed endpoints, sorted and de-duplicated by address: of two at one address,
    /// one that is not terminating wins, as in kube-proxy, else one that is serving.
    pub(crate) fn flatten(&self) -> Vec<Endpoint> {
        if let [only] = &*self.0 {
            return only.endpoints.to_vec();
        }
        let mut out = Vec::with_capacity(self.entries());
        for run in self.0.iter() {
            out.extend_from_slice(&run.endpoints);
        }
        sort_and_dedup(&mut out);
        out
    }
}

impl From<Vec<Endpoint>> for Listing {
    /// A listing of one run: `endpoints`, sorted and de-duplicated here.
    fn from(mut endpoints: Vec<Endpoint>) -> Listing {
        sort_and_dedup(&mut endpoints);
        Listing::of_runs(vec![Run {
            name: Arc::from(""),
            endpoints: Arc::from(endpoints),
        }])
    }
}
