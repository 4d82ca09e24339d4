//! Every built-in profile parses, validates and passes its own golden vectors.

use enocean_agent::eep::{self, Library, library::builtin_files};

#[test]
fn every_builtin_profile_is_valid() {
    let mut errors = Vec::new();
    for (name, text) in builtin_files() {
        if let Err(e) = eep::parse_profile(&text, name) {
            errors.push(e.to_string());
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The binary carries the files compressed (build.rs): each unpacks to its file, byte for byte,
/// and every file of the directory is there.
#[test]
fn embedded_files_unpack_to_the_files_of_the_directory() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("eep-profiles");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let embedded: Vec<(&str, String)> = builtin_files().collect();
    assert_eq!(
        embedded.iter().map(|e| e.0).collect::<Vec<_>>(),
        on_disk.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (name, text) in embedded {
        assert_eq!(
            text,
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "{name} unpacks to other text"
        );
    }
}

#[test]
fn every_golden_vector_passes() {
    let lib = Library::builtin().unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for p in lib.iter() {
        count += p.vectors.len();
        for f in eep::check_vectors(p) {
            failures.push(format!("{}.toml: {f}", p.eep));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{} profiles, {count} golden vectors", lib.len());
}

#[test]
fn every_profile_has_two_golden_vectors_with_values() {
    let lib = Library::builtin().unwrap();
    for p in lib.iter() {
        let with_values = p.vectors.iter().filter(|v| !v.expect.is_empty()).count();
        assert!(
            with_values >= 2,
            "{} has {with_values} golden vectors with values",
            p.eep
        );
    }
}

#[test]
fn readme_lists_every_semantic_key() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eep-profiles/README.md"
    ))
    .unwrap();
    for k in eep::keys::KEYS {
        let row = format!("| `{}` |", k.name);
        assert!(
            readme.contains(&row),
            "README.md has no row for key {}",
            k.name
        );
    }
}

#[test]
fn readme_worked_example_is_valid_and_passes() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eep-profiles/README.md"
    ))
    .unwrap();
    let start = readme.find("```toml\n").unwrap() + 8;
    let end = start + readme[start..].find("```").unwrap();
    let p = eep::parse_profile(&readme[start..end], "A5-04-01.toml").unwrap();
    assert!(
        eep::check_vectors(&p).is_empty(),
        "{:?}",
        eep::check_vectors(&p)
    );
}

#[test]
fn readme_coverage_table_matches_the_profiles() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/eep-profiles/README.md"
    ))
    .unwrap();
    let start = readme.find("<!-- coverage:start -->").unwrap();
    let end = readme.find("<!-- coverage:end -->").unwrap();
    let rows: Vec<Vec<String>> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| family"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let lib = Library::builtin().unwrap();
    let families = lib.families();
    assert_eq!(rows.len(), families.len(), "one row per family");
    for (row, fam) in rows.iter().zip(&families) {
        assert_eq!(row[0], fam.to_string());
        let types: Vec<String> = lib
            .iter()
            .filter(|p| p.id.rorg == fam.rorg && p.id.func == fam.func)
            .map(|p| p.id.type_label())
            .collect();
        assert_eq!(row[2], types.join(", "), "{fam} types");
        assert_eq!(row[3], fam.profiles.to_string(), "{fam} profiles");
        assert_eq!(row[4], fam.vectors.to_string(), "{fam} vectors");
        assert!(!row[5].is_empty(), "{fam} second source");
    }
}
