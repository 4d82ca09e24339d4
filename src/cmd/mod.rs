//! One module per subcommand of the binary.
pub mod context;
pub mod decode;
pub mod deliveries;
pub mod listen;
pub mod outbox;
pub mod profiles;
pub mod sim;
pub mod webhook;
