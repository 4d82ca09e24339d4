//! One module per subcommand of the binary.
pub mod decode;
pub mod profiles;
