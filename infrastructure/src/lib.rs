//! Adapters of lct's ports: the embedded event store, in-process fan-out, and the contract
//! suite every event store adapter must pass.
#![forbid(unsafe_code)]

pub mod contract;
pub mod embedded;

pub use embedded::EmbeddedEventStore;
