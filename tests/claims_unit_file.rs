//! The README's install promises checked against the files it installs (no systemd runs here, so
//! the unit itself cannot be started): "`Type=notify`, a 30 s watchdog, restart on failure (not on
//! exit 78), state in `/var/lib/enocean-agent`", the user in `dialout`, the stick as
//! `/dev/enocean`. The attack is a drift between the files: an example configuration whose outbox
//! lies outside the only directory `ProtectSystem=strict` leaves writable would stop every fresh
//! install at its first commit; a udev group the service user is not in, or a device class the
//! unit does not allow, would hide the stick.

use std::collections::BTreeMap;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `Key=value` lines of a unit file, every value of a key in order (comments left out).
fn unit(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        keys.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    keys
}

#[test]
fn the_unit_sysusers_udev_rule_and_example_configuration_agree() {
    let u = unit(&read("systemd/enocean-agent.service"));
    let one = |k: &str| -> &str {
        let v = u.get(k).unwrap_or_else(|| panic!("{k} missing"));
        assert_eq!(v.len(), 1, "{k} set {} times", v.len());
        &v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("WatchdogSec"), "30s");
    assert_eq!(one("Restart"), "on-failure");
    assert!(
        one("RestartPreventExitStatus")
            .split_whitespace()
            .any(|c| c == "78"),
        "exit 78 (configuration error) must not be restarted"
    );
    assert_eq!(one("ProtectSystem"), "strict");
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/bin/enocean-agent");
    assert_eq!(exec[1], "run");
    let config_path = exec[exec.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(config_path, "/etc/enocean-agent/config.toml");

    // The example configuration installed as that file keeps its outbox where the unit lets the
    // service write: its StateDirectory.
    let state = format!("/var/lib/{}/", one("StateDirectory"));
    let example: toml::Table = read("systemd/config.example.toml").parse().unwrap();
    let outbox = example["storage"]["path"].as_str().unwrap();
    assert!(
        outbox.starts_with(&state),
        "outbox {outbox} is outside the writable {state}"
    );
    assert_eq!(state, "/var/lib/enocean-agent/");
    assert!(
        !u.contains_key("ReadWritePaths"),
        "another writable path: keep README's \"state in /var/lib/enocean-agent\" true"
    );

    // The user and its groups: the unit's user is the one sysusers creates, in the group the
    // udev rule gives the stick, and the unit lets that device class through.
    let sysusers = read("systemd/enocean-agent.sysusers");
    let user = one("User");
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["u", user])),
        "sysusers does not create {user}"
    );
    let rule = read("systemd/60-enocean-usb300.rules");
    let rule = rule.lines().find(|l| l.starts_with("SUBSYSTEM")).unwrap();
    let group = rule
        .split("GROUP=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert!(
        sysusers
            .lines()
            .any(|l| l.split_whitespace().eq(["m", user, group])),
        "{user} is not made a member of {group}"
    );
    assert!(
        one("SupplementaryGroups")
            .split_whitespace()
            .any(|g| g == group)
    );
    assert!(rule.contains("SYMLINK+=\"enocean\""));
    assert_eq!(example["serial"]["port"].as_str(), Some("/dev/enocean"));
    // The USB 300 is an FTDI serial converter: a ttyUSB character device.
    assert!(rule.contains("ATTRS{idVendor}==\"0403\""));
    assert!(
        u["DeviceAllow"]
            .iter()
            .any(|d| d.starts_with("char-ttyUSB")),
        "the stick's device class is not allowed"
    );
    assert_eq!(one("DevicePolicy"), "closed");

    // The Debian package installs the same files where the README's hand install puts them.
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let assets = cargo["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .unwrap();
    let dest_of = |src: &str| -> String {
        assets
            .iter()
            .find(|a| a[0].as_str() == Some(src))
            .and_then(|a| a[1].as_str())
            .unwrap_or_else(|| panic!("{src} not packaged"))
            .to_owned()
    };
    assert_eq!(dest_of("target/release/enocean-agent"), "usr/bin/");
    assert_eq!(
        dest_of("systemd/enocean-agent.service"),
        "usr/lib/systemd/system/"
    );
    assert_eq!(
        dest_of("systemd/enocean-agent.sysusers"),
        "usr/lib/sysusers.d/enocean-agent.conf"
    );
    assert_eq!(
        dest_of("systemd/60-enocean-usb300.rules"),
        "usr/lib/udev/rules.d/"
    );
}
