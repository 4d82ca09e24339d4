//! One module per subcommand of the binary.
pub mod context;
pub mod decode;
pub mod deliveries;
pub mod outbox;
pub mod webhook;
