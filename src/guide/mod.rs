//! Topic guides: how each part of the resolver works and how to use it. Start with
//! [`targets`], then [`configuration`]; [`failures`] says what happens on a bad day.

#[doc = include_str!("targets.md")]
pub mod targets {}

#[doc = include_str!("configuration.md")]
pub mod configuration {}

#[doc = include_str!("sources.md")]
pub mod sources {}

#[doc = include_str!("publishing.md")]
pub mod publishing {}

#[doc = include_str!("picking.md")]
pub mod picking {}

#[doc = include_str!("failures.md")]
pub mod failures {}

#[doc = include_str!("testing.md")]
pub mod testing {}
