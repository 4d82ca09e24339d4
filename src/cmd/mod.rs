//! One module per subcommand of the binary.
pub mod decode;
pub mod listen;
pub mod profiles;
pub mod sim;
