//! `enocean-agent profiles`: list, show and check EEP profiles.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use enocean_agent::eep::{self, Library, Profile, library::read_dir_profiles, model::FieldSpec};

use super::cli::{self, Arg, Help, Parser, UsageError};
use super::outln;

/// Arguments of `profiles`.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub(crate) command: Command,
}

/// What `profiles` does.
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    /// List known profiles: EEP, title and the semantic keys they yield; the count and the
    /// families go to stderr.
    List {
        /// Also load profiles from this directory (they add to or override the built-in ones).
        profiles: Option<PathBuf>,
        /// List the families instead: family, profiles, golden vectors, title.
        families: bool,
    },
    /// Show one profile: cases, fields with bit positions, scaling and units.
    Show {
        /// The EEP, e.g. A5-02-05.
        eep: String,
        /// Also load profiles from this directory.
        profiles: Option<PathBuf>,
    },
    /// Validate the profile files of a directory and run their golden vectors.
    Check {
        /// Directory with `*.toml` profile files.
        dir: PathBuf,
    },
}

/// What `profiles --help` shows.
pub const HELP: Help = Help {
    cmd: "profiles",
    usage: "<COMMAND>",
    about: "List, show and check EEP profiles",
    commands: &[
        ("list", LIST_HELP.about),
        ("show", SHOW_HELP.about),
        ("check", CHECK_HELP.about),
    ],
    args: &[],
    options: &[],
};

/// What `profiles list --help` shows.
pub const LIST_HELP: Help = Help {
    cmd: "profiles list",
    usage: "[OPTIONS]",
    about: "List known profiles: EEP, title and the semantic keys they yield; the count and the \
            families go to stderr",
    commands: &[],
    args: &[],
    options: &[
        (
            "--profiles <DIR>",
            "Also load profiles from this directory (they add to or override the built-in ones)",
        ),
        (
            "--families",
            "List the families instead: family, profiles, golden vectors, title",
        ),
    ],
};

/// What `profiles show --help` shows.
pub const SHOW_HELP: Help = Help {
    cmd: "profiles show",
    usage: "[OPTIONS] <EEP>",
    about: "Show one profile: cases, fields with bit positions, scaling and units",
    commands: &[],
    args: &[("<EEP>", "The EEP, e.g. A5-02-05")],
    options: &[("--profiles <DIR>", "Also load profiles from this directory")],
};

/// What `profiles check --help` shows.
pub const CHECK_HELP: Help = Help {
    cmd: "profiles check",
    usage: "<DIR>",
    about: "Validate the profile files of a directory and run their golden vectors",
    commands: &[],
    args: &[("<DIR>", "Directory with `*.toml` profile files")],
    options: &[],
};

/// The arguments after `profiles`.
pub fn parse(p: &mut Parser) -> Result<Args, UsageError> {
    let h = &HELP;
    let word = cli::subcommand(p, h, None)?.ok_or(UsageError::Missing(h))?;
    let command = match word.as_str() {
        "list" => {
            let h = &LIST_HELP;
            let (mut profiles, mut families) = (None, false);
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Long("profiles") => cli::once_path(p, h, "--profiles", &mut profiles)?,
                    Arg::Long("families") => cli::flag(&mut families, h, "--families")?,
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Command::List { profiles, families }
        }
        "show" => {
            let h = &SHOW_HELP;
            let (mut eep, mut profiles) = (None, None);
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Long("profiles") => cli::once_path(p, h, "--profiles", &mut profiles)?,
                    Arg::Value(v) if eep.is_none() => eep = Some(cli::text(h, v, "EEP")?),
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Command::Show {
                eep: cli::required(eep, h, "EEP")?,
                profiles,
            }
        }
        "check" => {
            let h = &CHECK_HELP;
            let mut dir = None;
            while let Some(arg) = cli::next(p, h)? {
                match arg {
                    Arg::Value(v) if dir.is_none() => dir = Some(PathBuf::from(v)),
                    arg => return Err(cli::unexpected(h, arg)),
                }
            }
            Command::Check {
                dir: cli::required(dir, h, "DIR")?,
            }
        }
        "help" => return Err(cli::help_for(p, h, parse)),
        other => return Err(cli::unknown_command(h, other)),
    };
    Ok(Args { command })
}

/// Loads the built-in profiles plus an optional directory.
pub fn load_library(dir: Option<&Path>) -> Result<Library> {
    let mut lib = Library::builtin().context("built-in profiles")?;
    if let Some(dir) = dir {
        lib.load_dir(dir)?;
    }
    Ok(lib)
}

/// Runs `profiles`.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::List { profiles, families } => {
            let lib = load_library(profiles.as_deref())?;
            let fams = lib.families();
            let mut out = String::new();
            if families {
                for f in &fams {
                    let _ = writeln!(
                        out,
                        "{f}\t{}\t{}\t{}",
                        f.profiles,
                        f.vectors,
                        f.title.unwrap_or("")
                    );
                }
            } else {
                for p in lib.iter() {
                    let mut keys: Vec<&str> = Vec::new();
                    for f in p.cases.iter().flat_map(|c| &c.fields) {
                        if !keys.contains(&f.spec.key.as_str()) {
                            keys.push(&f.spec.key);
                        }
                    }
                    let _ = writeln!(out, "{}\t{}\t{}", p.eep, p.title, keys.join(","));
                }
            }
            print_out(&out)?;
            let vectors: usize = fams.iter().map(|f| f.vectors).sum();
            let list: Vec<String> = fams
                .iter()
                .map(|f| format!("{f} ({})", f.profiles))
                .collect();
            eprintln!(
                "{} profiles in {} families, {vectors} golden vectors: {}",
                lib.len(),
                fams.len(),
                list.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { eep, profiles } => {
            let lib = load_library(profiles.as_deref())?;
            let p = lib.get_str(&eep)?;
            print_out(&show(p, lib.origin(p.id).unwrap_or("")))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { dir } => check(&dir),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

fn check(dir: &Path) -> Result<ExitCode> {
    let files = read_dir_profiles(dir)?;
    let mut out = String::new();
    let mut errors = 0;
    let mut vectors = 0;
    for (path, result) in &files {
        match result {
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                errors += 1;
            }
            Ok(p) => {
                vectors += p.vectors.len();
                if p.vectors.len() < 2 {
                    outln!(
                        "error: {path}: has {} golden vectors, needs 2",
                        p.vectors.len()
                    );
                    errors += 1;
                }
                for f in eep::check_vectors(p) {
                    let _ = writeln!(out, "error: {path}: {f}");
                    errors += 1;
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "{} files, {vectors} golden vectors, {errors} errors",
        files.len()
    );
    print_out(&out)?;
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Byte and bit of a payload bit offset in the spec's notation (DB3.7 is offset 0 of 4 bytes);
/// shown as plain offsets because VLD lengths vary.
fn bits(f: &FieldSpec) -> String {
    let range = |offset: usize, size: usize| {
        if size == 1 {
            format!("bit {offset}")
        } else {
            format!("bits {}..{}", offset, offset + size - 1)
        }
    };
    let mut s = range(f.offset, f.size);
    for b in &f.more_bits {
        s.push_str(" + ");
        s.push_str(&range(b.offset, b.size));
    }
    s
}

fn show(p: &Profile, origin: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}  {}", p.eep, p.title);
    let _ = writeln!(s, "source: {origin}");
    if let Some(d) = &p.description {
        let _ = writeln!(s, "{d}");
    }
    for (i, c) in p.cases.iter().enumerate() {
        let mut sel = Vec::new();
        if let Some(d) = c.direction {
            sel.push(format!("direction {d}"));
        }
        if let Some(st) = c.status {
            if let Some(t) = st.t21 {
                sel.push(format!("T21={}", u8::from(t)));
            }
            if let Some(n) = st.nu {
                sel.push(format!("NU={}", u8::from(n)));
            }
        }
        if let Some(l) = c.length {
            sel.push(format!("length {l}"));
        }
        if let Some(l) = c.min_length {
            sel.push(format!("length >= {l}"));
        }
        for b in &c.select {
            let mut vals: Vec<String> = b.value.iter().map(|v| v.to_string()).collect();
            vals.extend(b.values.iter().map(|v| v.to_string()));
            sel.push(format!(
                "bits {}..{} = {}",
                b.offset,
                b.offset + b.size - 1,
                vals.join("|")
            ));
        }
        let _ = writeln!(
            s,
            "\ncase {i}{}{}",
            c.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            if sel.is_empty() {
                String::new()
            } else {
                format!(" when {}", sel.join(", "))
            }
        );
        for field in &c.fields {
            let f = &field.spec;
            let unit = field
                .key
                .unit
                .map(|u| format!(" [{u}]"))
                .unwrap_or_default();
            let mut how = Vec::new();
            if let Some(sc) = f.scale {
                how.push(format!(
                    "raw {}..{} -> {}..{}",
                    sc.raw[0], sc.raw[1], sc.value[0], sc.value[1]
                ));
            }
            if let Some(x) = f.factor {
                how.push(format!(
                    "x {x}{}",
                    f.add.map(|a| format!(" + {a}")).unwrap_or_default()
                ));
            }
            if f.signed {
                how.push("signed".into());
            }
            if let Some(m) = &f.multiplier {
                how.push(format!("times {:?} by {}", m.values, m.field));
            }
            if f.bool {
                how.push(if f.invert { "bool (0 = true)" } else { "bool" }.into());
            }
            for w in &f.when {
                let mut v: Vec<String> = w.is.iter().map(|x| x.to_string()).collect();
                v.extend(w.any_of.iter().map(|x| x.to_string()));
                how.push(format!("only when {} = {}", w.field, v.join("|")));
            }
            let _ = writeln!(
                s,
                "  {:<8} {:<28} {:<12}{}{}",
                f.shortcut,
                f.key,
                bits(f),
                unit,
                if how.is_empty() {
                    String::new()
                } else {
                    format!("  {}", how.join("; "))
                }
            );
            for item in &f.items {
                let raw = match (item.raw, item.min, item.max) {
                    (Some(r), _, _) => r.to_string(),
                    (None, Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => "?".into(),
                };
                let _ = writeln!(s, "           {raw:>12} = {}", item.label);
            }
            for sn in &f.sentinels {
                let raw = match (sn.raw, sn.min, sn.max) {
                    (Some(r), _, _) => r.to_string(),
                    (None, Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => "?".into(),
                };
                let _ = writeln!(s, "           {raw:>12} : no value ({})", sn.status);
            }
        }
    }
    let _ = writeln!(s, "\n{} golden vectors", p.vectors.len());
    s
}
