//! Embeds every `eep-profiles/*.toml` file in the binary (see `src/eep/library.rs`), and sets the
//! plausible-time floor (see `src/clock.rs`).
use std::fmt::Write as _;
use std::path::Path;

/// The earliest wall-clock time (unix seconds) this build can run at: `SOURCE_DATE_EPOCH` when set
/// (reproducible builds), else the date of the commit being built, else the time of the build.
fn plausible_floor() -> (u64, &'static str) {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return (secs, "SOURCE_DATE_EPOCH");
    }
    let commit = std::process::Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        });
    if let Some(secs) = commit {
        return (secs, "commit date");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (now, "build time")
}

fn main() {
    let (floor, source) = plausible_floor();
    println!("cargo:rustc-env=ENOCEAN_AGENT_PLAUSIBLE_FLOOR={floor}");
    println!("cargo:rustc-env=ENOCEAN_AGENT_PLAUSIBLE_FLOOR_SOURCE={source}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("eep-profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// Embedded profile files: (file name, contents).\npub static FILES: &[(&str, &str)] = &[\n",
    );
    for n in &names {
        let path = dir.join(n);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("builtin_profiles.rs");
    std::fs::write(dest, out).unwrap();
}
