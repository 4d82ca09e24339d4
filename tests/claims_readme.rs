//! Keeps the README and `docs/claims.md` honest as the code moves: every crate in `Cargo.toml` has
//! a row (or a mention) in the README's "Dependencies and why", and every test `docs/claims.md`
//! names as the attack on a promise exists under that name.

use std::path::Path;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_readme_says_why_every_dependency_is_there() {
    let readme = read("README.md");
    let start = readme
        .find("## Dependencies and why")
        .expect("the README's dependency section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let mut crates: Vec<String> = Vec::new();
    for table in ["dependencies", "dev-dependencies"] {
        crates.extend(cargo[table].as_table().unwrap().keys().cloned());
    }
    for target in cargo["target"].as_table().unwrap().values() {
        for table in ["dependencies", "dev-dependencies"] {
            if let Some(t) = target.get(table).and_then(|t| t.as_table()) {
                crates.extend(t.keys().cloned());
            }
        }
    }
    assert!(crates.len() > 20, "{crates:?}");
    let missing: Vec<&String> = crates
        .iter()
        .filter(|c| !section.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "crates without a word in the README's \"Dependencies and why\": {missing:?}"
    );
}

#[test]
fn every_test_named_in_the_claims_table_exists() {
    let claims = read("docs/claims.md");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    let mut file = String::new();
    let mut missing = Vec::new();
    // `file::name` (a test under tests/), `src/x.rs::name` (a unit test), or `::name` (the
    // file named last in the same cell).
    for cell in claims.split('`') {
        let Some((left, name)) = cell.rsplit_once("::") else {
            continue;
        };
        if name == "*" || name.contains('…') || name == "name" {
            if !left.is_empty() {
                file = left.to_owned();
            }
            continue;
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        if !left.is_empty() {
            file = left.to_owned();
        }
        let path = if file.starts_with("src/") {
            root.join(&file)
        } else {
            root.join("tests").join(format!("{file}.rs"))
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if !text.contains(&format!("fn {name}(")) {
            missing.push(format!("{file}::{name}"));
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} references found");
    assert!(
        missing.is_empty(),
        "docs/claims.md names tests that do not exist: {missing:?}"
    );
}
