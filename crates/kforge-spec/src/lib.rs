//! The kforge cluster file: talhelper's `talconfig.yaml`, read unchanged, plus kforge's
//! extensions. Loading substitutes environment variables, decodes with positions, merges
//! group settings into nodes and validates the whole cluster, reporting every problem with
//! `file:line:col`. Pure: files are read through a [`SourceReader`] the caller provides.

pub mod decode;
pub mod diagnostic;
pub mod env;
pub mod load;
pub mod model;
pub mod path;
pub mod validate;
pub mod versions;

pub use diagnostic::{Diagnostic, Location, Severity, SourceFile};
pub use load::{Cluster, LoadOptions, Loaded, ResolvedNode, SourceReader, load};
pub use path::Path;
