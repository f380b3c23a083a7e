//! kuberesolver (crate docs written later)
#![forbid(unsafe_code)]

mod error;
mod target;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, ErrorKind};
pub use target::{Port, Target};
