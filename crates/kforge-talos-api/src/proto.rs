//! Generated protobuf types and gRPC stubs (client and server) for the Talos API subset
//! kforge uses. The module tree mirrors the proto packages because generated code refers
//! to sibling packages through `super::`.

#![allow(clippy::all, missing_docs)]

pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
}

pub mod machine {
    include!(concat!(env!("OUT_DIR"), "/machine.rs"));
}

pub mod cluster {
    include!(concat!(env!("OUT_DIR"), "/cluster.rs"));
}

pub mod google {
    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}
