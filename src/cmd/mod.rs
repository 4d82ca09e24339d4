//! One module per subcommand of the binary.
pub mod check_config;
pub mod context;
pub mod decode;
pub mod deliveries;
pub mod demo;
pub mod devices;
pub mod listen;
pub mod logging;
pub mod outbox;
pub mod profiles;
pub mod run;
pub mod signals;
pub mod sim;
pub mod webhook;
