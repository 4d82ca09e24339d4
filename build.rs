//! Embeds every `eep-profiles/*.toml` file in the binary (see `src/eep/library.rs`), compressed
//! with LZ4 in groups of consecutive files against a dictionary of two typical files (1.1 MB of
//! TOML become about 110 kB of the binary; a profile is unpacked when it is first looked up), and
//! sets the plausible-time floor (see `src/clock.rs`).
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

/// Profile files whose text is the compression dictionary of all of them.
const DICTIONARY: [&str; 2] = ["A5-10-01.toml", "D2-01-00.toml"];

/// Most text bytes packed into one compressed group (a lookup unpacks one group).
const GROUP_TEXT: usize = 64 * 1024;

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
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let packed_dir = out_dir.join("profiles");
    std::fs::create_dir_all(&packed_dir).unwrap();
    // The dictionary: a short and a long multi-command profile (every construct appears).
    let mut dict = Vec::new();
    for n in DICTIONARY {
        dict.extend(std::fs::read(dir.join(n)).unwrap_or_default());
    }
    std::fs::write(out_dir.join("profiles.dict"), &dict).unwrap();
    // Consecutive files (by name) are packed together up to GROUP_TEXT bytes of text and each
    // group compressed as one LZ4 block against the dictionary: the files of a family share most
    // of their text, so 242 files take about 110 kB instead of 235 kB compressed one by one. A
    // lookup unpacks one group (at most GROUP_TEXT bytes, briefly) and keeps its file's text.
    let mut files = String::new();
    let mut groups = String::new();
    let mut group: Vec<u8> = Vec::new();
    let mut group_index = 0usize;
    let flush = |group: &mut Vec<u8>, group_index: &mut usize, groups: &mut String| {
        if group.is_empty() {
            return;
        }
        let packed = lz4_flex::block::compress_prepend_size_with_dict(group, &dict);
        let dest = packed_dir.join(format!("group{group_index}.lz4"));
        std::fs::write(&dest, packed).unwrap();
        writeln!(
            groups,
            "    include_bytes!({:?}),",
            dest.display().to_string()
        )
        .unwrap();
        group.clear();
        *group_index += 1;
    };
    for n in &names {
        let path = dir.join(n);
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read(&path).unwrap();
        if !group.is_empty() && group.len() + text.len() > GROUP_TEXT {
            flush(&mut group, &mut group_index, &mut groups);
        }
        writeln!(
            files,
            "    File {{ name: {n:?}, group: {group_index}, start: {}, len: {} }},",
            group.len(),
            text.len()
        )
        .unwrap();
        group.extend_from_slice(&text);
    }
    flush(&mut group, &mut group_index, &mut groups);
    let mut out = String::from(
        "/// Embedded profile files, sorted by name: where each one's text is in its group.\n\
         pub static FILES: &[File] = &[\n",
    );
    out.push_str(&files);
    out.push_str("];\n");
    out.push_str(
        "/// Groups of consecutive files' texts: LZ4 blocks with their size first, against DICT.\n\
         pub static GROUPS: &[&[u8]] = &[\n",
    );
    out.push_str(&groups);
    out.push_str("];\n");
    out.push_str("/// The dictionary the files are compressed against.\n");
    writeln!(
        out,
        "pub static DICT: &[u8] = include_bytes!({:?});",
        out_dir.join("profiles.dict").display().to_string()
    )
    .unwrap();
    std::fs::write(out_dir.join("builtin_profiles.rs"), out).unwrap();
}
