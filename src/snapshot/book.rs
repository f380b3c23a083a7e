//! The next snapshot from the previous one and what changed: the publisher's books.
//!
//! A watch event changes one object. Rebuilding the snapshot of a Service of 100,000
//! endpoints from scratch costs milliseconds, mostly in reference counts (every `Endpoint`
//! is an `Arc`). So the publisher keeps, beside the current snapshot, how many objects list
//! each address, and how many of the kept endpoints are ready and terminating. With them, a
//! new listing that differs from the last in a few runs is decided address by address for
//! the addresses of those runs only, and the new snapshot's flat addresses are the previous
//! ones with those few inserted or removed: one copy of the addresses, no sort, no
//! reference count per endpoint. Its `endpoints()` are flattened only when asked.
//!
//! Changes too large for that (a relist, a port seen anew, the Service's first ready
//! endpoint or its last) take the way from scratch, which also rebuilds the books.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::listing::{preference, Listing, Run};
use super::{used, Addresses, Endpoint, Snapshot};

/// Beyond this many changed runs (the previous listing's and the new one's together), a
/// snapshot is built from scratch.
const MAX_CHANGED_RUNS: usize = 16;

/// What the publisher knows of the last listing it was given.
#[derive(Default)]
pub(crate) struct Book {
    listing: Listing,
    /// How many runs of `listing` list each address.
    listed: HashMap<SocketAddr, u32>,
    /// How many of the kept endpoints (one per address) are ready.
    ready: usize,
    /// How many of the kept endpoints are terminating.
    terminating: usize,
    /// The address buffer of the snapshot before the current one, to reuse once nothing
    /// else holds it.
    spare: Option<Arc<[SocketAddr]>>,
}

/// An address whose kept endpoint changes.
struct Change<'a> {
    addr: SocketAddr,
    old: Option<&'a Endpoint>,
    new: Option<&'a Endpoint>,
}

/// One edit of the previous addresses: at index `at` of them, insert `Some` address, or
/// remove (`None`) the one there.
type Edit = (usize, Option<SocketAddr>);

impl Book {
    /// The snapshot of `listing` with `version`, unless it would hold the same endpoints as
    /// `current` (which was made from the last listing, or has the same endpoints). Nothing
    /// published yet (version 0): always a snapshot.
    pub(crate) fn next(
        &mut self,
        current: &Snapshot,
        listing: Listing,
        version: u64,
    ) -> Option<Snapshot> {
        if current.version() > 0 {
            if let Some(next) = self.step(current, &listing, version) {
                self.listing = listing;
                return next;
            }
        }
        let snapshot = Snapshot::from_listing(version, listing.clone());
        self.rebuild(listing, &snapshot);
        let same = current.version() > 0
            && current.endpoints() == snapshot.endpoints()
            && current.terminating() == snapshot.terminating();
        (!same).then_some(snapshot)
    }

    /// Panics unless the books are what a rebuild from the listing would make.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut rebuilt = Book::default();
        let snapshot = Snapshot::from_listing(1, self.listing.clone());
        rebuilt.rebuild(self.listing.clone(), &snapshot);
        assert_eq!(self.listed, rebuilt.listed, "objects listing each address");
        assert_eq!(
            (self.ready, self.terminating),
            (rebuilt.ready, rebuilt.terminating),
            "ready and terminating endpoints kept"
        );
    }

    /// The books of `listing`, whose snapshot is `snapshot`.
    fn rebuild(&mut self, listing: Listing, snapshot: &Snapshot) {
        self.listed.clear();
        self.listed.reserve(listing.entries());
        for run in listing.runs() {
            for e in run.endpoints.iter() {
                *self.listed.entry(e.addr()).or_insert(0) += 1;
            }
        }
        let used = snapshot.endpoints();
        self.ready = if used.first().is_some_and(|e| e.conditions().ready) {
            used.len()
        } else {
            0
        };
        self.terminating = snapshot.terminating().len();
        self.listing = listing;
    }

    /// The next snapshot decided from the runs that changed (`Some(None)`: no change), or
    /// `None` when the change is too large for that (the books are unchanged then).
    fn step(
        &mut self,
        current: &Snapshot,
        listing: &Listing,
        version: u64,
    ) -> Option<Option<Snapshot>> {
        let (gone, came) = changed_runs(&self.listing, listing);
        if gone.len() + came.len() > MAX_CHANGED_RUNS {
            return None;
        }
        let mut affected: Vec<SocketAddr> = gone
            .iter()
            .chain(&came)
            .flat_map(|r| r.endpoints.iter().map(Endpoint::addr))
            .collect();
        affected.sort_unstable();
        affected.dedup();
        let changes = self.changes(&affected, &gone, &came, listing)?;
        let any_ready_before = self.ready > 0;
        let mut ready = self.ready;
        let mut terminating = self.terminating;
        for c in &changes {
            let count = |e: Option<&Endpoint>, what: fn(&Endpoint) -> bool| {
                usize::from(e.is_some_and(what))
            };
            let is_ready = |e: &Endpoint| e.conditions().ready;
            let is_terminating = |e: &Endpoint| e.conditions().terminating;
            ready = (ready + count(c.new, is_ready)).saturating_sub(count(c.old, is_ready));
            terminating = (terminating + count(c.new, is_terminating))
                .saturating_sub(count(c.old, is_terminating));
        }
        let any_ready = ready > 0;
        let addresses = if any_ready == any_ready_before {
            // Checked before the books change: a failed check leaves them as they were.
            Some(edited(
                &current.0.addresses,
                &changes,
                any_ready,
                &mut self.spare,
            )?)
        } else {
            // The Service's first ready endpoint, or its last: every address changes.
            None
        };
        for run in &gone {
            for e in run.endpoints.iter() {
                if let Some(n) = self.listed.get_mut(&e.addr()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.listed.remove(&e.addr());
                    }
                }
            }
        }
        for run in &came {
            for e in run.endpoints.iter() {
                *self.listed.entry(e.addr()).or_insert(0) += 1;
            }
        }
        self.ready = ready;
        self.terminating = terminating;
        if changes.is_empty() {
            return Some(None);
        }
        Some(Some(match addresses {
            Some(addresses) => Snapshot::listed(version, listing.clone(), addresses, terminating),
            None => Snapshot::from_listing(version, listing.clone()),
        }))
    }

    /// The addresses among `affected` whose kept endpoint changes when the runs `gone`
    /// leave and `came` come, or `None` when deciding them here would cost more than a
    /// snapshot from scratch (addresses that other runs list too, in numbers).
    fn changes<'a>(
        &self,
        affected: &[SocketAddr],
        gone: &[&'a Run],
        came: &[&'a Run],
        listing: &'a Listing,
    ) -> Option<Vec<Change<'a>>> {
        let best = |runs: &[&'a Run], addr| {
            runs.iter()
                .filter_map(|r| r.at(addr))
                .min_by_key(|e| preference(e))
        };
        let unchanged = || {
            listing
                .runs()
                .iter()
                .filter(|r| !came.iter().any(|c| Arc::ptr_eq(&c.endpoints, &r.endpoints)))
        };
        // Each address listed elsewhere too costs a look into every run.
        let mut budget = listing.entries() + self.listing.entries();
        let mut changes = Vec::new();
        for &addr in affected {
            let (mut old, mut new) = (best(gone, addr), best(came, addr));
            let listed_before = self.listed.get(&addr).map_or(0, |n| *n as usize);
            let in_gone = gone.iter().filter(|r| r.at(addr).is_some()).count();
            if listed_before > in_gone {
                budget = budget.checked_sub(listing.runs().len())?;
                let other = unchanged()
                    .filter_map(|r| r.at(addr))
                    .min_by_key(|e| preference(e));
                let better = |a: Option<&'a Endpoint>| {
                    a.into_iter().chain(other).min_by_key(|e| preference(e))
                };
                (old, new) = (better(old), better(new));
            }
            if old != new {
                changes.push(Change { addr, old, new });
            }
        }
        Some(changes)
    }
}

/// The runs of `old` that `new` does not share, and those of `new` that `old` does not.
/// Both are ordered by name; an object whose run is the same `Arc` did not change.
fn changed_runs<'a>(old: &'a Listing, new: &'a Listing) -> (Vec<&'a Run>, Vec<&'a Run>) {
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    let (mut o, mut n) = (old.runs().iter().peekable(), new.runs().iter().peekable());
    loop {
        match (o.peek(), n.peek()) {
            (None, None) => return (gone, came),
            (Some(a), Some(b)) if a.name == b.name => {
                if !Arc::ptr_eq(&a.endpoints, &b.endpoints) {
                    gone.push(*a);
                    came.push(*b);
                }
                o.next();
                n.next();
            }
            (Some(a), Some(b)) if a.name < b.name => {
                gone.push(*a);
                o.next();
            }
            (Some(a), None) => {
                gone.push(*a);
                o.next();
            }
            (_, Some(b)) => {
                came.push(*b);
                n.next();
            }
        }
    }
}

/// `previous` with the addresses that `changes` start or stop using (under `any_ready`),
/// or `previous` itself when none does. `None` when `previous` does not agree with the
/// changes (an address to remove is not there, or one to insert is): never expected, and
/// answered from scratch.
///
/// The addresses are written into `spare`, the buffer of an older snapshot, when nothing
/// else holds it any more and it has room: one copy, no allocation. Otherwise into a new
/// buffer with some room to spare, and the buffer of `previous` becomes the spare.
fn edited(
    previous: &Addresses,
    changes: &[Change<'_>],
    any_ready: bool,
    spare: &mut Option<Arc<[SocketAddr]>>,
) -> Option<Addresses> {
    let is_used = |e: Option<&Endpoint>| e.is_some_and(|e| used(e.conditions(), any_ready));
    let old: &[SocketAddr] = previous;
    let mut edits: Vec<Edit> = Vec::new();
    for c in changes {
        let (was, is) = (is_used(c.old), is_used(c.new));
        if was == is {
            continue;
        }
        let at = old.partition_point(|a| *a < c.addr);
        let there = old.get(at) == Some(&c.addr);
        if there != was {
            return None;
        }
        edits.push((at, is.then_some(c.addr)));
    }
    if edits.is_empty() {
        return Some(previous.clone());
    }
    let inserted = edits.iter().filter(|e| e.1.is_some()).count();
    // Each removal is of an address that is there, once: at most `old.len()` of them.
    let len = old.len() + inserted - (edits.len() - inserted);
    let mut buf = spare.take().filter(|b| b.len() >= len);
    let out = match buf.as_mut().and_then(Arc::get_mut) {
        Some(out) => out,
        None => {
            let unset = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
            let room = len + len / 32 + 16;
            Arc::get_mut(buf.insert(std::iter::repeat_n(unset, room).collect()))?
        }
    };
    let mut written = 0;
    let mut copy = |from: &[SocketAddr]| {
        if let Some(to) = out.get_mut(written..written + from.len()) {
            to.copy_from_slice(from);
        }
        written += from.len();
    };
    let mut from = 0;
    for (at, insert) in edits {
        copy(old.get(from..at).unwrap_or_default());
        match insert {
            Some(addr) => {
                copy(&[addr]);
                from = at;
            }
            None => from = at + 1,
        }
    }
    copy(old.get(from..).unwrap_or_default());
    *spare = Some(previous.buf.clone());
    buf.map(|buf| Addresses { buf, len })
}
