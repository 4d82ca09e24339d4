//! Unit tests of the command-line parsers: `parse` in main.rs, every command's `parse` in
//! src/cmd/ and the shared parts in src/cmd/cli.rs.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use enocean_agent::serial::PortChoice;

use super::{Command, HELP, parse};
use crate::cmd::cli::{self, Parser, UsageError};
use crate::cmd::context::{ConfigArg, DEFAULT_CONFIG};
use crate::cmd::{
    check_config, decode, deliveries, devices, listen, outbox, profiles, run, webhook,
};

fn parse_os(args: Vec<OsString>) -> Result<Command, UsageError> {
    parse(&mut Parser::from_args(args))
}

fn try_parse(args: &[&str]) -> Result<Command, UsageError> {
    parse(&mut Parser::from_args(args))
}

/// The command `args` parse to; fails the test with the usage error otherwise.
fn ok(args: &[&str]) -> Command {
    match try_parse(args) {
        Ok(c) => c,
        Err(e) => panic!("{args:?}: {}", e.report().0),
    }
}

/// The message of the usage error `args` give, as printed: `enocean-agent CMD: MESSAGE`.
fn err(args: &[&str]) -> String {
    err_of(try_parse(args), args)
}

fn err_of(r: Result<Command, UsageError>, args: &[&str]) -> String {
    match r {
        Err(e @ UsageError::Invalid(..)) => {
            let (text, to_stderr, code) = e.report();
            assert!(to_stderr && code == 2, "{args:?}");
            let mut lines = text.lines();
            let first = lines.next().unwrap_or_default().to_owned();
            let hint = lines.next().unwrap_or_default();
            assert!(
                hint.starts_with("(see enocean-agent") && hint.ends_with(" --help)"),
                "{args:?}: {text}"
            );
            first
        }
        other => panic!("{args:?}: expected a usage error, got {other:?}"),
    }
}

/// The command words of the help that `args` ask for.
fn help(args: &[&str]) -> &'static str {
    match try_parse(args) {
        Err(UsageError::Help(h)) => h.cmd,
        other => panic!("{args:?}: expected help, got {other:?}"),
    }
}

fn config(path: &str) -> ConfigArg {
    ConfigArg {
        config: PathBuf::from(path),
    }
}

fn default_config() -> ConfigArg {
    config(DEFAULT_CONFIG)
}

/// Every command's words with the arguments it needs, for the checks that apply to all.
const EVERY_COMMAND: &[&[&str]] = &[
    #[cfg(feature = "sim")]
    &["demo"],
    &["run"],
    &["check-config"],
    &["devices"],
    &["devices", "forget", "0180A3F2"],
    &["decode", "-"],
    #[cfg(feature = "sim")]
    &["sim", "--link", "/tmp/x"],
    &["listen"],
    &["profiles", "list"],
    &["profiles", "show", "A5-02-05"],
    &["profiles", "check", "dir"],
    &["webhook", "list"],
    &["webhook", "test", "a"],
    &["webhook", "enable", "a"],
    &["webhook", "disable", "a"],
    &["outbox", "status"],
    &["outbox", "failed"],
    &["outbox", "resend", "1"],
    &["outbox", "salvage", "f"],
    &["deliveries"],
];

// ---- the top level ----

#[test]
fn no_command_prints_the_top_help_to_stderr_with_status_2() {
    match try_parse(&[]) {
        Err(e @ UsageError::Missing(_)) => {
            let (text, to_stderr, code) = e.report();
            assert!(to_stderr);
            assert_eq!(code, 2);
            assert!(text.contains("Usage: enocean-agent <COMMAND>"), "{text}");
            assert!(text.contains("\n  outbox "), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn version_and_help() {
    assert_eq!(ok(&["--version"]), Command::Version);
    assert_eq!(ok(&["-V"]), Command::Version);
    assert_eq!(help(&["--help"]), "");
    assert_eq!(help(&["-h"]), "");
    assert_eq!(help(&["help"]), "");
    assert_eq!(help(&["help", "outbox"]), "outbox");
    assert_eq!(help(&["help", "outbox", "resend"]), "outbox resend");
    assert_eq!(help(&["outbox", "help"]), "outbox");
    assert_eq!(help(&["outbox", "help", "resend"]), "outbox resend");
    assert_eq!(
        help(&["outbox", "-c", "x", "resend", "--help"]),
        "outbox resend"
    );
    assert_eq!(help(&["webhook", "test", "-h"]), "webhook test");
    assert_eq!(help(&["devices", "forget", "--help"]), "devices forget");
    assert_eq!(help(&["profiles", "help", "check"]), "profiles check");
    // Help wins over missing arguments that come after it, as with clap.
    assert_eq!(help(&["decode", "--help"]), "decode");
    assert_eq!(
        help(&["outbox", "resend", "-h", "--failed", "1"]),
        "outbox resend"
    );
    assert!(err(&["help", "bogus"]).contains("unknown command 'bogus'"));
}

#[test]
fn every_command_in_the_top_help_has_its_own_help() {
    for (name, about) in HELP.commands {
        if *name == "help" {
            continue;
        }
        let cmd = help(&[name, "--help"]);
        assert_eq!(cmd, *name);
        let (text, to_stderr, code) = UsageError::Help(&HELP).report();
        assert!(!to_stderr && code == 0);
        assert!(text.contains(about), "{text}");
    }
}

#[test]
fn every_command_with_subcommands_has_their_help() {
    let groups: [&cli::Help; 4] = [
        &devices::HELP,
        &outbox::HELP,
        &profiles::HELP,
        &webhook::HELP,
    ];
    for group in groups {
        for (name, about) in group.commands {
            let words: Vec<&str> = group.cmd.split(' ').chain([*name, "--help"]).collect();
            let cmd = help(&words);
            assert_eq!(cmd, format!("{} {name}", group.cmd));
            match try_parse(&words) {
                Err(UsageError::Help(h)) => assert_eq!(h.about, *about),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn unknown_commands_are_errors() {
    assert_eq!(err(&["bogus"]), "enocean-agent: unknown command 'bogus'");
    assert_eq!(
        err(&["outbox", "bogus"]),
        "enocean-agent outbox: unknown command 'bogus'"
    );
    assert_eq!(
        err(&["webhook", "bogus"]),
        "enocean-agent webhook: unknown command 'bogus'"
    );
    assert_eq!(
        err(&["profiles", "bogus"]),
        "enocean-agent profiles: unknown command 'bogus'"
    );
    assert_eq!(
        err(&["devices", "bogus"]),
        "enocean-agent devices: unknown command 'bogus'"
    );
    assert!(err(&["--bogus"]).contains("unknown option --bogus"));
    // `-c` belongs to the commands that read a configuration, as it did with clap.
    assert!(err(&["-c", "x", "run"]).contains("unknown option -c"));
}

#[test]
fn groups_without_a_subcommand_print_their_help_to_stderr() {
    for group in ["outbox", "webhook", "profiles"] {
        match try_parse(&[group]) {
            Err(e @ UsageError::Missing(h)) => {
                assert_eq!(h.cmd, group);
                let (_, to_stderr, code) = e.report();
                assert!(to_stderr && code == 2);
            }
            other => panic!("{group}: {other:?}"),
        }
    }
}

#[test]
fn every_command_refuses_unknown_options_and_extra_arguments() {
    for words in EVERY_COMMAND {
        ok(words);
        let mut args = words.to_vec();
        args.push("--bogus");
        let e = err(&args);
        assert!(e.contains("unknown option --bogus"), "{args:?}: {e}");
        args.pop();
        args.push("-Z");
        let e = err(&args);
        assert!(e.contains("unknown option -Z"), "{args:?}: {e}");
        // Extra positionals (but `outbox resend` takes any number of IDs).
        if words[..] != ["outbox", "resend", "1"] {
            args.pop();
            args.push("extra");
            let e = err(&args);
            assert!(
                e.contains("unexpected argument 'extra'") || e.contains("unknown command 'extra'"),
                "{args:?}: {e}"
            );
        }
        // The error names the command it is about.
        let prefix = format!("enocean-agent {}", words[0]);
        assert!(e.starts_with(&prefix), "{e}");
    }
}

// ---- the commands ----

#[test]
fn run_and_check_config_take_the_config() {
    assert_eq!(
        ok(&["run"]),
        Command::Run(run::Args {
            config: default_config()
        })
    );
    for args in [
        &["run", "-c", "a.toml"][..],
        &["run", "-ca.toml"],
        &["run", "-c=a.toml"],
        &["run", "--config", "a.toml"],
        &["run", "--config=a.toml"],
        // The last one counts, as with clap's global option.
        &["run", "-c", "b.toml", "--config", "a.toml"],
    ] {
        assert_eq!(
            ok(args),
            Command::Run(run::Args {
                config: config("a.toml")
            }),
            "{args:?}"
        );
    }
    assert_eq!(
        ok(&["check-config", "--config", "a.toml"]),
        Command::CheckConfig(check_config::Args {
            config: config("a.toml")
        })
    );
    assert_eq!(
        err(&["run", "--config"]),
        "enocean-agent run: --config needs a value"
    );
    assert_eq!(
        err(&["run", "-c"]),
        "enocean-agent run: --config needs a value"
    );
    // A value for an option may start with `-` only when joined to it.
    assert!(err(&["run", "-c", "-x"]).contains("--config needs a value, not '-x'"));
    assert_eq!(
        ok(&["run", "--config=-x"]),
        Command::Run(run::Args {
            config: config("-x")
        })
    );
}

#[test]
fn the_config_goes_before_or_after_a_subcommand() {
    let expected = Command::Outbox(outbox::Args {
        config: config("a.toml"),
        action: outbox::Action::Status,
    });
    assert_eq!(ok(&["outbox", "-c", "a.toml", "status"]), expected);
    assert_eq!(ok(&["outbox", "status", "-c", "a.toml"]), expected);
    assert_eq!(ok(&["outbox", "status", "--config=a.toml"]), expected);
    assert_eq!(ok(&["outbox", "-cb", "status", "-ca.toml"]), expected);
    assert_eq!(
        ok(&["webhook", "test", "hook", "--config", "a.toml"]),
        Command::Webhook(webhook::Args {
            config: config("a.toml"),
            action: webhook::Action::Test {
                name: "hook".into()
            },
        })
    );
    assert_eq!(
        ok(&["webhook", "--config=a.toml", "list"]),
        Command::Webhook(webhook::Args {
            config: config("a.toml"),
            action: webhook::Action::List,
        })
    );
    for args in [
        &["devices", "forget", "0180A3F2", "--config", "a.toml"][..],
        &["devices", "-c", "a.toml", "forget", "0180A3F2"],
    ] {
        assert_eq!(
            ok(args),
            Command::Devices(devices::Args {
                config: config("a.toml"),
                action: Some(devices::Action::Forget {
                    id: "0180A3F2".into()
                }),
            }),
            "{args:?}"
        );
    }
    assert_eq!(
        ok(&["devices", "-c", "a.toml"]),
        Command::Devices(devices::Args {
            config: config("a.toml"),
            action: None,
        })
    );
}

#[test]
fn before_its_subcommand_name_a_group_takes_only_its_config_and_help() {
    // A config and no name: the group's help (`devices` lists, above).
    for group in ["outbox", "webhook"] {
        match try_parse(&[group, "-c", "a.toml"]) {
            Err(UsageError::Missing(h)) => assert_eq!(h.cmd, group),
            other => panic!("{group}: {other:?}"),
        }
    }
    // `profiles` reads no configuration, before its name either.
    assert_eq!(
        err(&["profiles", "-c", "x", "list"]),
        "enocean-agent profiles: unknown option -c"
    );
    for group in ["devices", "outbox", "webhook"] {
        assert_eq!(help(&[group, "-c", "a.toml", "--help"]), group);
        assert_eq!(
            err(&[group, "--bogus", "x"]),
            format!("enocean-agent {group}: unknown option --bogus")
        );
    }
}

#[test]
fn decode_inputs() {
    let base = decode::Args::default();
    assert_eq!(
        ok(&["decode", "capture.esp3"]),
        Command::Decode(decode::Args {
            input: Some("capture.esp3".into()),
            ..decode::Args::default()
        })
    );
    assert_eq!(
        ok(&["decode", "-"]),
        Command::Decode(decode::Args {
            input: Some("-".into()),
            ..decode::Args::default()
        })
    );
    // `--` makes a file name starting with `-` a positional.
    assert_eq!(
        ok(&["decode", "--events", "--", "-capture"]),
        Command::Decode(decode::Args {
            input: Some("-capture".into()),
            events: true,
            ..decode::Args::default()
        })
    );
    for args in [
        &["decode", "--hex", "55 00"][..],
        &["decode", "--hex=55 00"],
    ] {
        assert_eq!(
            ok(args),
            Command::Decode(decode::Args {
                hex: Some("55 00".into()),
                ..decode::Args::default()
            })
        );
    }
    assert_eq!(
        ok(&[
            "decode",
            "--payload",
            "F6 50",
            "--sender",
            "FEF1A2B3",
            "--status=30",
            "--eep",
            "F6-02-01",
            "--direction",
            "2",
            "--profiles",
            "dir",
            "--events",
        ]),
        Command::Decode(decode::Args {
            payload: Some("F6 50".into()),
            sender: Some("FEF1A2B3".into()),
            status: Some("30".into()),
            eep: Some("F6-02-01".into()),
            direction: Some(2),
            profiles: Some("dir".into()),
            events: true,
            ..base
        })
    );
}

#[test]
fn decode_conflicts_requirements_and_ranges() {
    let d = |args: &[&str]| {
        let mut all = vec!["decode"];
        all.extend_from_slice(args);
        err(&all)
    };
    let msg = |m: &str| format!("enocean-agent decode: {m}");
    assert_eq!(
        d(&["f", "--hex", "55"]),
        msg("INPUT cannot be used with --hex")
    );
    assert_eq!(
        d(&["f", "--payload", "A5"]),
        msg("INPUT cannot be used with --payload")
    );
    assert_eq!(
        d(&["--hex", "55", "--payload", "A5"]),
        msg("--hex cannot be used with --payload")
    );
    assert_eq!(
        d(&[]),
        msg("give a capture file (INPUT, `-` for stdin), --hex or --payload")
    );
    assert_eq!(
        d(&["--events"]),
        msg("give a capture file (INPUT, `-` for stdin), --hex or --payload")
    );
    assert_eq!(
        d(&["--hex", "55", "--sender", "01020304"]),
        msg("--sender requires --payload")
    );
    assert_eq!(
        d(&["f", "--status", "30"]),
        msg("--status requires --payload")
    );
    assert_eq!(
        d(&["f", "--direction", "1"]),
        msg("--direction requires --eep")
    );
    for bad in ["0", "3", "300"] {
        assert_eq!(
            d(&["f", "--eep", "A5-02-05", "--direction", bad]),
            msg(&format!("--direction is 1 or 2, not {bad}"))
        );
    }
    assert_eq!(
        d(&["f", "--eep", "A5-02-05", "--direction=-1"]),
        msg("--direction is 1 or 2, not -1")
    );
    assert_eq!(
        d(&["f", "--eep", "A5-02-05", "--direction", "x"]),
        msg("invalid value 'x' for --direction: invalid digit found in string")
    );
    assert_eq!(d(&["f", "g"]), msg("unexpected argument 'g'"));
    assert_eq!(d(&["--hex"]), msg("--hex needs a value"));
    assert_eq!(
        d(&["--hex", "55", "--hex", "55"]),
        msg("--hex given more than once")
    );
    assert_eq!(
        d(&["f", "--events", "--events"]),
        msg("--events given more than once")
    );
    assert_eq!(
        d(&["f", "--events=yes"]),
        msg("--events takes no value ('yes' given)")
    );
    // A forgotten value is not taken from the next option.
    assert_eq!(
        d(&["--eep", "--hex", "55"]),
        msg("--eep needs a value, not '--hex' (a value starting with - goes as --eep=VALUE)")
    );
}

#[test]
fn deliveries_options_and_defaults() {
    assert_eq!(
        ok(&["deliveries"]),
        Command::Deliveries(deliveries::Args {
            config: default_config(),
            webhook: None,
            failed: false,
            limit: 20,
            verbose: false,
        })
    );
    assert_eq!(
        ok(&[
            "deliveries",
            "--webhook",
            "hook",
            "--failed",
            "--limit=5",
            "--verbose",
            "-c",
            "a.toml"
        ]),
        Command::Deliveries(deliveries::Args {
            config: config("a.toml"),
            webhook: Some("hook".into()),
            failed: true,
            limit: 5,
            verbose: true,
        })
    );
    assert_eq!(
        err(&["deliveries", "--limit", "many"]),
        "enocean-agent deliveries: invalid value 'many' for --limit: invalid digit found in string"
    );
}

#[cfg(feature = "sim")]
#[test]
fn demo_options_and_defaults() {
    use crate::cmd::demo;
    assert_eq!(
        ok(&["demo"]),
        Command::Demo(demo::Args {
            duration: 15,
            rate: 4.0,
            seed: 1,
            #[cfg(feature = "mqtt")]
            mqtt: None,
        })
    );
    assert_eq!(
        ok(&["demo", "--duration", "3", "--rate=10", "--seed", "7"]),
        Command::Demo(demo::Args {
            duration: 3,
            rate: 10.0,
            seed: 7,
            #[cfg(feature = "mqtt")]
            mqtt: None,
        })
    );
    let e = err(&["demo", "--rate", "fast"]);
    assert_eq!(
        e,
        "enocean-agent demo: invalid value 'fast' for --rate: invalid float literal"
    );
    let args = ["demo", "--mqtt", "mqtt://127.0.0.1:1883"];
    #[cfg(feature = "mqtt")]
    assert_eq!(
        ok(&args),
        Command::Demo(demo::Args {
            duration: 15,
            rate: 4.0,
            seed: 1,
            mqtt: Some("mqtt://127.0.0.1:1883".into()),
        })
    );
    #[cfg(not(feature = "mqtt"))]
    assert!(err(&args).contains("--mqtt: this build has no MQTT client"));
}

#[cfg(feature = "sim")]
#[test]
fn sim_options_and_defaults() {
    use crate::cmd::sim;
    assert_eq!(
        ok(&["sim", "--link", "/tmp/enocean-sim"]),
        Command::Sim(sim::Args {
            link: "/tmp/enocean-sim".into(),
            rate: 5.0,
            seed: 1,
            duration: None,
            count: None,
        })
    );
    assert_eq!(
        ok(&[
            "sim",
            "--rate",
            "50",
            "--seed",
            "3",
            "--duration",
            "1.5",
            "--count=40",
            "--link=/tmp/l"
        ]),
        Command::Sim(sim::Args {
            link: "/tmp/l".into(),
            rate: 50.0,
            seed: 3,
            duration: Some(1.5),
            count: Some(40),
        })
    );
    assert_eq!(err(&["sim"]), "enocean-agent sim: --link is required");
    // A negative number goes joined to its option; the command refuses it with its own message.
    assert!(err(&["sim", "--link", "l", "--duration", "-1"]).contains("--duration needs a value"));
    let Command::Sim(a) = ok(&["sim", "--link", "l", "--duration=-1"]) else {
        panic!()
    };
    assert_eq!(a.duration, Some(-1.0));
}

#[test]
fn listen_options_and_defaults() {
    let defaults = listen::Args {
        port: PortChoice::Device("/dev/enocean".into()),
        duration: None,
        all: false,
        #[cfg(feature = "sim")]
        sim_rate: 2.0,
        #[cfg(feature = "sim")]
        sim_seed: 1,
        eep: Vec::new(),
        config: DEFAULT_CONFIG.into(),
    };
    let Command::Listen(plain) = ok(&["listen"]) else {
        panic!()
    };
    assert_eq!(plain, defaults);
    let Command::Listen(a) = ok(&[
        "listen",
        "--port",
        "sim",
        "--duration",
        "2",
        "--all",
        "--eep",
        "0180A3F2=A5-04-01",
        "--eep=FEF1A2B3=F6-02-01",
        "-cmy.toml",
    ]) else {
        panic!()
    };
    assert_eq!(a.port, PortChoice::Simulated);
    assert_eq!(a.duration, Some(2.0));
    assert!(a.all);
    assert_eq!(a.eep, ["0180A3F2=A5-04-01", "FEF1A2B3=F6-02-01"]);
    assert_eq!(a.config, PathBuf::from("my.toml"));
    let Command::Listen(a) = ok(&["listen", "--port", "/dev/ttyUSB0", "-c", "x.toml"]) else {
        panic!()
    };
    assert_eq!(a.port, PortChoice::Device("/dev/ttyUSB0".into()));
    assert_eq!(a.config, PathBuf::from("x.toml"));
    #[cfg(feature = "sim")]
    {
        let Command::Listen(a) = ok(&["listen", "--sim-rate", "9", "--sim-seed", "4"]) else {
            panic!()
        };
        assert_eq!((a.sim_rate, a.sim_seed), (9.0, 4));
    }
    #[cfg(not(feature = "sim"))]
    assert!(err(&["listen", "--sim-rate", "9"]).contains("unknown option --sim-rate"));
    assert_eq!(
        err(&["listen", "--port", "a", "--port", "b"]),
        "enocean-agent listen: --port given more than once"
    );
}

#[test]
fn profiles_subcommands() {
    assert_eq!(
        ok(&["profiles", "list"]),
        Command::Profiles(profiles::Args {
            command: profiles::Command::List {
                profiles: None,
                families: false
            }
        })
    );
    assert_eq!(
        ok(&["profiles", "list", "--families", "--profiles", "dir"]),
        Command::Profiles(profiles::Args {
            command: profiles::Command::List {
                profiles: Some("dir".into()),
                families: true
            }
        })
    );
    assert_eq!(
        ok(&["profiles", "show", "A5-02-05", "--profiles=dir"]),
        Command::Profiles(profiles::Args {
            command: profiles::Command::Show {
                eep: "A5-02-05".into(),
                profiles: Some("dir".into())
            }
        })
    );
    assert_eq!(
        ok(&["profiles", "check", "--", "-dir"]),
        Command::Profiles(profiles::Args {
            command: profiles::Command::Check { dir: "-dir".into() }
        })
    );
    assert_eq!(
        err(&["profiles", "show"]),
        "enocean-agent profiles show: EEP is required"
    );
    assert_eq!(
        err(&["profiles", "check"]),
        "enocean-agent profiles check: DIR is required"
    );
    // No configuration here.
    assert!(err(&["profiles", "list", "-c", "x"]).contains("unknown option -c"));
}

#[test]
fn webhook_subcommands() {
    let w = |action| {
        Command::Webhook(webhook::Args {
            config: default_config(),
            action,
        })
    };
    assert_eq!(ok(&["webhook", "list"]), w(webhook::Action::List));
    assert_eq!(
        ok(&["webhook", "test", "hook"]),
        w(webhook::Action::Test {
            name: "hook".into()
        })
    );
    assert_eq!(
        ok(&["webhook", "enable", "--", "-hook"]),
        w(webhook::Action::Enable {
            name: "-hook".into()
        })
    );
    assert_eq!(
        ok(&["webhook", "disable", "hook"]),
        w(webhook::Action::Disable {
            name: "hook".into()
        })
    );
    assert_eq!(
        err(&["webhook", "enable"]),
        "enocean-agent webhook enable: NAME is required"
    );
}

#[test]
fn outbox_subcommands() {
    let o = |action| {
        Command::Outbox(outbox::Args {
            config: default_config(),
            action,
        })
    };
    assert_eq!(ok(&["outbox", "status"]), o(outbox::Action::Status));
    assert_eq!(
        ok(&["outbox", "failed", "--webhook", "hook"]),
        o(outbox::Action::Failed {
            webhook: Some("hook".into())
        })
    );
    assert_eq!(
        ok(&["outbox", "resend", "4", "5", "6"]),
        o(outbox::Action::Resend {
            ids: vec![4, 5, 6],
            failed: false,
            since: None,
            webhook: None
        })
    );
    assert_eq!(
        ok(&[
            "outbox",
            "resend",
            "--failed",
            "--since",
            "2h",
            "--webhook=hook"
        ]),
        o(outbox::Action::Resend {
            ids: vec![],
            failed: true,
            since: Some("2h".into()),
            webhook: Some("hook".into())
        })
    );
    assert_eq!(
        ok(&["outbox", "salvage", "outbox.db.corrupt-1"]),
        o(outbox::Action::Salvage {
            file: "outbox.db.corrupt-1".into()
        })
    );
    assert_eq!(
        ok(&["outbox", "salvage", "--", "-weird"]),
        o(outbox::Action::Salvage {
            file: "-weird".into()
        })
    );
}

#[test]
fn outbox_resend_conflicts_and_requirements() {
    let msg = |m: &str| format!("enocean-agent outbox resend: {m}");
    assert_eq!(
        err(&["outbox", "resend"]),
        msg("give delivery IDs (from `outbox failed`) or --failed")
    );
    assert_eq!(
        err(&["outbox", "resend", "--failed", "5"]),
        msg("delivery IDs cannot be used with --failed")
    );
    assert_eq!(
        err(&["outbox", "resend", "5", "--since", "2h"]),
        msg("--since requires --failed")
    );
    assert_eq!(
        err(&["outbox", "resend", "5", "--webhook", "hook"]),
        msg("--webhook requires --failed")
    );
    assert_eq!(
        err(&["outbox", "resend", "five"]),
        msg("invalid value 'five' for a delivery ID: invalid digit found in string")
    );
    assert_eq!(
        err(&["outbox", "salvage"]),
        "enocean-agent outbox salvage: FILE is required"
    );
}

#[test]
fn non_utf8_arguments_are_errors_or_paths_never_panics() {
    let bad = || OsString::from_vec(vec![b'a', 0xFF, b'b']);
    let os = |words: &[&str], last: OsString| {
        let mut v: Vec<OsString> = words.iter().map(OsString::from).collect();
        v.push(last);
        v
    };
    // Paths keep their bytes.
    let Ok(Command::Decode(d)) = parse_os(os(&["decode"], bad())) else {
        panic!()
    };
    assert_eq!(d.input, Some(PathBuf::from(bad())));
    let Ok(Command::Run(r)) = parse_os(os(&["run", "-c"], bad())) else {
        panic!()
    };
    assert_eq!(r.config.config, PathBuf::from(bad()));
    let Ok(Command::Listen(l)) = parse_os(os(&["listen", "--port"], bad())) else {
        panic!()
    };
    assert_eq!(l.port, PortChoice::Device(bad().into()));
    // Text is refused with the option's name.
    let e = err_of(parse_os(os(&["decode", "--hex"], bad())), &[]);
    assert_eq!(
        e,
        "enocean-agent decode: --hex: not valid UTF-8: 'a\u{FFFD}b'"
    );
    let e = err_of(parse_os(os(&["webhook", "test"], bad())), &[]);
    assert_eq!(
        e,
        "enocean-agent webhook test: NAME: not valid UTF-8: 'a\u{FFFD}b'"
    );
    let e = err_of(parse_os(os(&[], bad())), &[]);
    assert_eq!(e, "enocean-agent: command: not valid UTF-8: 'a\u{FFFD}b'");
    // Options with bad bytes are unknown options.
    let mut dash = b"--".to_vec();
    dash.extend_from_slice(&[0xFF, b'x']);
    let e = err_of(parse_os(os(&["run"], OsString::from_vec(dash))), &[]);
    assert!(e.contains("unknown option --"), "{e}");
    let e = err_of(
        parse_os(os(&["run"], OsString::from_vec(vec![b'-', 0xFF]))),
        &[],
    );
    assert!(e.contains("unknown option -"), "{e}");
}

// ---- the help texts ----

#[test]
fn help_shows_usage_about_options_values_and_defaults() {
    let text = cli::help_text(&decode::HELP);
    assert!(text.starts_with(decode::HELP.about), "{text}");
    assert!(
        text.contains("\nUsage: enocean-agent decode [OPTIONS] "),
        "{text}"
    );
    assert!(
        text.contains("\nArguments:\n  <INPUT>  Capture file"),
        "{text}"
    );
    assert!(
        text.contains("\n      --eep <RR-FF-TT>  Decode radio"),
        "{text}"
    );
    assert!(text.contains("\n  -h, --help        "), "{text}");
    assert!(text.contains("[default: 00000000]"), "{text}");

    let text = cli::help_text(&outbox::HELP);
    assert!(
        text.contains("\nCommands:\n  status   Depth per webhook"),
        "{text}"
    );
    assert!(
        text.contains(
            "  -c, --config <PATH>  Configuration file [default: /etc/enocean-agent/config.toml]"
        ),
        "{text}"
    );
    let text = cli::help_text(&HELP);
    assert!(text.contains("\n  -V, --version  Print version"), "{text}");
    assert!(text.contains("\n  check-config  Validate"), "{text}");
    assert_eq!(text.contains("\n  demo "), cfg!(feature = "sim"), "{text}");
    let text = cli::help_text(&listen::HELP);
    assert_eq!(
        text.contains("--sim-rate <N>"),
        cfg!(feature = "sim"),
        "{text}"
    );
    assert!(text.contains("--eep <ID=EEP>"), "{text}");
}

#[test]
fn the_config_default_shown_is_the_one_used() {
    assert!(
        crate::cmd::context::CONFIG_OPT
            .1
            .contains(&format!("[default: {DEFAULT_CONFIG}]"))
    );
    let listen_config = listen::HELP
        .options
        .iter()
        .find(|(name, _)| name.starts_with("-c,"))
        .map(|(_, text)| *text)
        .unwrap_or_default();
    assert!(listen_config.contains(&format!("[default: {DEFAULT_CONFIG}]")));
}

#[test]
fn usage_error_report() {
    match try_parse(&["decode", "--hex", "55", "--sender", "01"]) {
        Err(e) => assert_eq!(
            e.report(),
            (
                "enocean-agent decode: --sender requires --payload\n\
                 (see enocean-agent decode --help)\n"
                    .to_string(),
                true,
                2
            )
        ),
        Ok(c) => panic!("{c:?}"),
    }
    match try_parse(&["outbox", "--help"]) {
        Err(e) => {
            let (text, to_stderr, code) = e.report();
            assert!(!to_stderr && code == 0);
            assert!(text.contains("Usage: enocean-agent outbox"));
        }
        Ok(c) => panic!("{c:?}"),
    }
}
