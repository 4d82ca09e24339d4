//! One module per subcommand of the binary.
pub mod decode;
pub mod listen;
pub mod sim;
pub mod profiles;
