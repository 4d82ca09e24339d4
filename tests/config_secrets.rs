//! Secrets as an operator provides them: systemd credentials, and a warning when a configuration
//! that holds a secret is readable by every user. Runs the real binary.

mod common;

use std::os::unix::fs::PermissionsExt;

const TOKEN: &str = "tok-6d1f0a9e";

fn check(config: &std::path::Path, credentials: Option<&std::path::Path>) -> (i32, String, String) {
    let mut cmd = common::agent_command();
    cmd.args(["check-config", "--config"]).arg(config);
    cmd.env_remove("CREDENTIALS_DIRECTORY");
    if let Some(dir) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", dir);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn token_file_names_a_systemd_credential() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    // As `LoadCredential=enocean-agent:/etc/enocean-agent/credentials` names a directory's files.
    std::fs::write(creds.join("enocean-agent_webhook-token"), TOKEN).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[webhook]]\nname = \"b\"\nurl = \"https://example.invalid/in\"\nauth = { type = \"bearer\", token_file = \"webhook-token\" }\n",
    )
    .unwrap();
    let (code, out, err) = check(&config, Some(&creds));
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "the token was printed"
    );
    assert!(out.contains("redacted"), "{out}");
    // Without the credential the file is missing: a configuration error naming the key.
    let (code, _, err) = check(&config, None);
    assert_eq!(code, 78);
    assert!(err.contains("token_file"), "{err}");
}

#[test]
fn world_readable_inline_secret_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[[webhook]]\nname = \"b\"\nurl = \"https://example.invalid/in\"\nauth = {{ type = \"bearer\", token = \"{TOKEN}\" }}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = check(&config, None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("every user can read"), "{err}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "the token was printed"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = check(&config, None);
    assert_eq!(code, 0);
    assert!(!err.contains("every user can read"), "{err}");
}

#[test]
fn the_shipped_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["webhook-token", "webhook-hmac"] {
        std::fs::write(dir.path().join(name), "example-secret").unwrap();
    }
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/config.example.toml");
    let (code, out, err) = check(&example, Some(dir.path()));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("lobby-pi") && out.contains("A5-04-01"),
        "{out}"
    );
    assert!(!out.contains("example-secret"));
}

#[test]
fn a_profiles_directory_adds_eeps_and_bad_files_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    // A vendor profile the built-ins do not have, written in the same format.
    let builtin = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eep-profiles/A5-02-05.toml"),
    )
    .unwrap();
    std::fs::write(
        profiles.join("A5-FE-01.toml"),
        builtin.replace("A5-02-05", "A5-FE-01"),
    )
    .unwrap();
    let device = "[[device]]\nid = \"0180A3F2\"\neep = \"A5-FE-01\"\n";
    let with_dir = dir.path().join("with.toml");
    std::fs::write(
        &with_dir,
        format!("[eep]\nprofiles_dir = \"profiles\"\n\n{device}"),
    )
    .unwrap();
    let (code, _, err) = check(&with_dir, None);
    assert_eq!(code, 0, "{err}");
    let without = dir.path().join("without.toml");
    std::fs::write(&without, device).unwrap();
    // Without the directory the EEP is unknown: a warning with the place, the device is kept.
    let (code, _, err) = check(&without, None);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning")
            && err.contains("without.toml:3:1: key `device[0].eep`")
            && err.contains("forwarded raw"),
        "{err}"
    );
    // A malformed profile file: named, with the config key that brought it in.
    std::fs::write(
        profiles.join("A5-FE-02.toml"),
        "eep = \"A5-FE-02\"\ntitle = 3\n",
    )
    .unwrap();
    let (code, _, err) = check(&with_dir, None);
    assert_eq!(code, 78, "{err}");
    assert!(
        err.contains("eep.profiles_dir") && err.contains("A5-FE-02.toml"),
        "{err}"
    );
}
