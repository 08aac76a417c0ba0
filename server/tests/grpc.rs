//! In-process tests of the gRPC surface: a real tonic client over 127.0.0.1 against `run`, fed by
//! a source the test controls.

mod grpc {
    pub mod util;

    mod connections;
    mod frames;
    mod health_and_reflection;
    mod lifecycle;
    mod limits;
    mod operability;
    mod resolve;
    mod watch;
}
