//! What the commands' argument parsers share. `lexopt` splits the command line into options and
//! values (`--opt value`, `--opt=value`, `-cVALUE`, `-c VALUE`, `--`); each command module maps
//! them onto its `Args` in a `parse` function and describes itself in a `HELP` constant, which
//! [`help_text`] lays out for `--help`.

use std::ffi::OsString;
use std::fmt::{self, Display, Write as _};
use std::path::PathBuf;
use std::str::FromStr;

pub use lexopt::{Arg, Parser};

use super::context::ConfigArg;

/// What `--help` shows of one command. The default of an option is written in its text, as
/// `[default: …]`.
pub struct Help {
    /// The command's words after `enocean-agent` (`outbox resend`); empty at the top level.
    pub cmd: &'static str,
    /// What follows them in the usage line (`[OPTIONS] [IDS]...`).
    pub usage: &'static str,
    /// One line saying what the command does.
    pub about: &'static str,
    /// Subcommands: name and what it does.
    pub commands: &'static [(&'static str, &'static str)],
    /// Positional arguments: name and what it is.
    pub args: &'static [(&'static str, &'static str)],
    /// Options: `-c, --config <PATH>` or `--all`, and what it does. `-h, --help` is added.
    pub options: &'static [(&'static str, &'static str)],
}

/// Why parsing stopped short of a command to run.
#[derive(Debug)]
pub enum UsageError {
    /// `--help`, `-h` or `help`: this help goes to stdout and the exit status is 0.
    Help(&'static Help),
    /// No (sub)command given: this help goes to stderr and the exit status is 2.
    Missing(&'static Help),
    /// A mistake on the command line of this command: the message and a hint go to stderr and
    /// the exit status is 2.
    Invalid(&'static Help, String),
}

impl fmt::Debug for Help {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Help({:?})", self.cmd)
    }
}

/// The exit status of a usage error (clap's and most tools' convention).
pub const EXIT_USAGE: u8 = 2;

impl UsageError {
    /// What to print and where (true: stderr), and the exit status.
    pub fn report(&self) -> (String, bool, u8) {
        match self {
            UsageError::Help(h) => (help_text(h), false, 0),
            UsageError::Missing(h) => (help_text(h), true, EXIT_USAGE),
            UsageError::Invalid(h, msg) => {
                let cmd = program(h.cmd);
                (
                    format!("{cmd}: {msg}\n(see {cmd} --help)\n"),
                    true,
                    EXIT_USAGE,
                )
            }
        }
    }
}

/// `enocean-agent` followed by the command's words.
fn program(cmd: &str) -> String {
    if cmd.is_empty() {
        "enocean-agent".into()
    } else {
        format!("enocean-agent {cmd}")
    }
}

/// A usage error of the command `h` describes.
pub fn invalid(h: &'static Help, msg: impl Display) -> UsageError {
    UsageError::Invalid(h, msg.to_string())
}

/// The next option or value, or None at the end.
pub fn next<'p>(p: &'p mut Parser, h: &'static Help) -> Result<Option<Arg<'p>>, UsageError> {
    p.next().map_err(|e| match e {
        lexopt::Error::UnexpectedValue { option, value } => invalid(
            h,
            format_args!(
                "{option} takes no value ('{}' given)",
                value.to_string_lossy()
            ),
        ),
        e => invalid(h, e),
    })
}

/// What to say of an argument the command does not take: its help for `-h`/`--help`, otherwise
/// an error naming it.
pub fn unexpected(h: &'static Help, arg: Arg<'_>) -> UsageError {
    match arg {
        Arg::Short('h') | Arg::Long("help") => UsageError::Help(h),
        Arg::Short(c) => invalid(h, format_args!("unknown option -{c}")),
        Arg::Long(name) => invalid(h, format_args!("unknown option --{name}")),
        Arg::Value(v) => invalid(
            h,
            format_args!("unexpected argument '{}'", v.to_string_lossy()),
        ),
    }
}

/// The value of the option `name` just read, as given. A separate value may not start with `-`
/// (it is more likely a forgotten value than a value): such values go as `--opt=-value`.
pub fn raw_value(p: &mut Parser, h: &'static Help, name: &str) -> Result<OsString, UsageError> {
    if let Some(v) = p.optional_value() {
        return Ok(v);
    }
    match p.value() {
        Ok(v) if v.len() > 1 && v.as_encoded_bytes().starts_with(b"-") => Err(invalid(
            h,
            format_args!(
                "{name} needs a value, not '{}' (a value starting with - goes as {name}=VALUE)",
                v.to_string_lossy()
            ),
        )),
        Ok(v) => Ok(v),
        Err(_) => Err(invalid(h, format_args!("{name} needs a value"))),
    }
}

/// Text from a command-line argument: `what` names it in the error for non-UTF-8 bytes.
pub fn text(h: &'static Help, v: OsString, what: &str) -> Result<String, UsageError> {
    v.into_string().map_err(|v| {
        invalid(
            h,
            format_args!("{what}: not valid UTF-8: '{}'", v.to_string_lossy()),
        )
    })
}

/// A value parsed from text; the error names `what` and the value.
pub fn parse_value<T: FromStr>(h: &'static Help, v: OsString, what: &str) -> Result<T, UsageError>
where
    T::Err: Display,
{
    let s = text(h, v, what)?;
    s.parse()
        .map_err(|e| invalid(h, format_args!("invalid value '{s}' for {what}: {e}")))
}

/// The value of the option `name` just read, parsed.
pub fn value<T: FromStr>(p: &mut Parser, h: &'static Help, name: &str) -> Result<T, UsageError>
where
    T::Err: Display,
{
    let v = raw_value(p, h, name)?;
    parse_value(h, v, name)
}

/// Stores `v` for the option `name`, which may be given once.
pub fn set<T>(slot: &mut Option<T>, v: T, h: &'static Help, name: &str) -> Result<(), UsageError> {
    if slot.replace(v).is_some() {
        return Err(invalid(h, format_args!("{name} given more than once")));
    }
    Ok(())
}

/// Reads and stores the value of the option `name` (given at most once).
pub fn once<T: FromStr>(
    p: &mut Parser,
    h: &'static Help,
    name: &str,
    slot: &mut Option<T>,
) -> Result<(), UsageError>
where
    T::Err: Display,
{
    let v = value(p, h, name)?;
    set(slot, v, h, name)
}

/// Reads and stores the path value of the option `name` (given at most once; any bytes).
pub fn once_path(
    p: &mut Parser,
    h: &'static Help,
    name: &str,
    slot: &mut Option<PathBuf>,
) -> Result<(), UsageError> {
    let v = raw_value(p, h, name)?;
    set(slot, PathBuf::from(v), h, name)
}

/// Sets the flag `name` (given at most once).
pub fn flag(flag: &mut bool, h: &'static Help, name: &str) -> Result<(), UsageError> {
    if std::mem::replace(flag, true) {
        return Err(invalid(h, format_args!("{name} given more than once")));
    }
    Ok(())
}

/// The value of a required option or argument.
pub fn required<T>(slot: Option<T>, h: &'static Help, name: &str) -> Result<T, UsageError> {
    slot.ok_or_else(|| invalid(h, format_args!("{name} is required")))
}

/// The word naming a subcommand (error for non-UTF-8 bytes).
pub fn word(h: &'static Help, v: OsString) -> Result<String, UsageError> {
    text(h, v, "command")
}

/// The name of a command group's subcommand (`outbox status`, `devices forget`), or None when
/// the command line ends before one (each group decides what that means: its help on stderr, or
/// a default action). Before the name, `-c/--config` goes into `config` for the groups that read
/// a configuration (None: `-c` is an unknown option); `-h/--help` gives the group's help, and
/// any other option is an error, as is a name that is not UTF-8.
pub(crate) fn subcommand(
    p: &mut Parser,
    h: &'static Help,
    mut config: Option<&mut ConfigArg>,
) -> Result<Option<String>, UsageError> {
    loop {
        match (next(p, h)?, config.as_deref_mut()) {
            (Some(Arg::Short('c') | Arg::Long("config")), Some(config)) => config.read(p, h)?,
            (Some(Arg::Value(v)), _) => return word(h, v).map(Some),
            (Some(arg), _) => return Err(unexpected(h, arg)),
            (None, _) => return Ok(None),
        }
    }
}

/// An unknown subcommand of the command `h` describes.
pub fn unknown_command(h: &'static Help, name: &str) -> UsageError {
    invalid(h, format_args!("unknown command '{name}'"))
}

/// `help [COMMAND...]`: the help of the named subcommand of the command that `parse` reads (its
/// own help without a name).
pub fn help_for<T>(
    p: &mut Parser,
    h: &'static Help,
    parse: fn(&mut Parser) -> Result<T, UsageError>,
) -> UsageError {
    let rest = match p.raw_args() {
        Ok(raw) => raw.collect::<Vec<_>>(),
        Err(e) => return invalid(h, e),
    };
    let mut sub = Parser::from_args(rest.into_iter().chain([OsString::from("--help")]));
    match parse(&mut sub) {
        Ok(_) => UsageError::Help(h),
        Err(e) => e,
    }
}

/// The text `--help` prints: what the command does, its usage line, its subcommands, arguments
/// and options with their defaults, each section in aligned columns.
pub fn help_text(h: &Help) -> String {
    const HELP_OPT: &[(&str, &str)] = &[("-h, --help", "Print help")];
    let mut s = String::new();
    let _ = write!(s, "{}\n\nUsage: {}", h.about, program(h.cmd));
    if !h.usage.is_empty() {
        let _ = write!(s, " {}", h.usage);
    }
    s.push('\n');
    let sections = [
        ("Commands", h.commands, &[][..]),
        ("Arguments", h.args, &[][..]),
        ("Options", h.options, HELP_OPT),
    ];
    for (title, items, extra) in sections {
        if items.is_empty() && extra.is_empty() {
            continue;
        }
        // Long-only options are indented past the place of a short one, as in `-c, --config`.
        let indent = |name: &str| if name.starts_with("--") { 4 } else { 0 };
        let items = || items.iter().chain(extra);
        let width = items()
            .map(|(name, _)| indent(name) + name.chars().count())
            .max()
            .unwrap_or(0);
        let _ = write!(s, "\n{title}:\n");
        for (name, text) in items() {
            let pad = width - name.chars().count();
            let _ = writeln!(
                s,
                "  {:indent$}{name}{:rest$}  {text}",
                "",
                "",
                indent = indent(name),
                rest = pad - indent(name)
            );
        }
    }
    s
}
