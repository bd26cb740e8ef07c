//! Adapters of lct's ports: the MongoDB and embedded event stores, in-process fan-out, and the
//! contract suite every event store adapter must pass.
#![forbid(unsafe_code)]

pub mod contract;
pub mod embedded;
pub mod live;
pub mod mongo;

pub use embedded::{EmbeddedEventStore, EmbeddedOptions};
pub use mongo::{MongoEventStore, MongoSettings};
