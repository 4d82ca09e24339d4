//! Places in the configuration file, taken from the TOML parser's spans (never from scanning the
//! text). The parsed document keeps the byte range of every key and value, so a problem in the
//! third `[[webhook]]` table points into that table, and a problem found after deserialization (a
//! missing secret file) points at the key that named it.
//!
//! Serde stops at the first error. [`deserialize_all`] therefore deserializes, takes the error's
//! span, finds the key or value it belongs to, reports it, removes that entry from a working copy
//! of the document and tries again, so one run reports every problem serde can see.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `webhook[1].auth.token_file`: keys joined by dots, array indices in brackets; a key that is
/// not a bare TOML key is quoted.
fn path_text(steps: &[Step]) -> String {
    let mut s = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    s.push_str(k);
                } else {
                    let _ = write!(s, "{k:?}");
                }
            }
            Step::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// Byte offsets to 1-based line and column (in characters).
#[derive(Debug, Clone, Default)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
    text: String,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            starts,
            text: text.to_owned(),
        }
    }

    /// Line and column of the byte `offset`.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// The place of every key of a configuration file by its path (`gateway.id`,
/// `webhook[1].auth.token_file`, `device[0].tags.room`), and of every array element
/// (`webhook[1]`: its `[[webhook]]` header). Kept with the loaded [`super::Config`] so checks made
/// later (EEP names against the profile library) point at the exact place too.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    places: BTreeMap<String, (usize, usize)>,
}

impl Positions {
    /// Places of every key of the parsed document.
    fn build(root: &DeTable<'_>, lines: &LineIndex) -> Self {
        let mut places = BTreeMap::new();
        let mut steps = Vec::new();
        walk_table(root, &mut steps, &mut |steps, at| {
            places.insert(path_text(steps), lines.line_col(at));
        });
        Self { places }
    }

    /// Line and column of the key at `path`, when the file has it.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.places.get(path).copied()
    }

    /// Line and column of the key at `path`, else of the closest enclosing key or table the file
    /// has (a missing `auth.token` points at `auth`); `(0, 0)` when none is written.
    pub fn nearest(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(at) = self.get(p) {
                return at;
            }
            match p.rfind(['.', '[']) {
                Some(cut) if cut > 0 => p = &p[..cut],
                _ => return (0, 0),
            }
        }
    }
}

fn walk_table(t: &DeTable<'_>, steps: &mut Vec<Step>, f: &mut dyn FnMut(&[Step], usize)) {
    for (k, v) in t.iter() {
        steps.push(Step::Key(k.get_ref().to_string()));
        f(steps, k.span().start);
        walk_value(v.get_ref(), steps, f);
        steps.pop();
    }
}

fn walk_value(v: &DeValue<'_>, steps: &mut Vec<Step>, f: &mut dyn FnMut(&[Step], usize)) {
    match v {
        DeValue::Table(t) => walk_table(t, steps, f),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                steps.push(Step::Index(i));
                f(steps, item.span().start);
                walk_value(item.get_ref(), steps, f);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// The entry an error span belongs to: the smallest key or value span that holds it (a table
/// made by a header has the header's span, so containment from the root down does not work), the
/// deeper one on a tie. `field` (from "unknown field `x`") refines a table to its key `x`.
fn locate(root: &DeTable<'_>, span: &Range<usize>, field: Option<&str>) -> (Vec<Step>, usize) {
    struct Best {
        len: usize,
        depth: usize,
        steps: Vec<Step>,
        at: usize,
    }
    fn covers(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end
    }
    fn consider(
        best: &mut Option<Best>,
        s: &Range<usize>,
        span: &Range<usize>,
        steps: &[Step],
        at: usize,
    ) {
        if !covers(s, span) {
            return;
        }
        let len = s.end - s.start;
        let better = match best {
            None => true,
            Some(b) => len < b.len || (len == b.len && steps.len() >= b.depth),
        };
        if better {
            *best = Some(Best {
                len,
                depth: steps.len(),
                steps: steps.to_vec(),
                at,
            });
        }
    }
    fn visit_table(
        t: &DeTable<'_>,
        steps: &mut Vec<Step>,
        span: &Range<usize>,
        best: &mut Option<Best>,
    ) {
        for (k, v) in t.iter() {
            steps.push(Step::Key(k.get_ref().to_string()));
            consider(best, &k.span(), span, steps, k.span().start);
            consider(best, &v.span(), span, steps, span.start);
            visit_value(v, steps, span, best);
            steps.pop();
        }
    }
    fn visit_value(
        v: &Spanned<DeValue<'_>>,
        steps: &mut Vec<Step>,
        span: &Range<usize>,
        best: &mut Option<Best>,
    ) {
        match v.get_ref() {
            DeValue::Table(t) => visit_table(t, steps, span, best),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    steps.push(Step::Index(i));
                    consider(best, &item.span(), span, steps, span.start);
                    visit_value(item, steps, span, best);
                    steps.pop();
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    let mut steps = Vec::new();
    visit_table(root, &mut steps, span, &mut best);
    let (mut steps, mut at) = best.map_or((Vec::new(), span.start), |b| (b.steps, b.at));
    if let Some(field) = field {
        if let Some(DeValue::Table(t)) = value_at(root, &steps) {
            if let Some((k, _)) = t.get_key_value(field) {
                steps.push(Step::Key(field.to_owned()));
                at = k.span().start;
            }
        } else if steps.is_empty()
            && let Some((k, _)) = root.get_key_value(field)
        {
            steps.push(Step::Key(field.to_owned()));
            at = k.span().start;
        }
    }
    (steps, at)
}

fn value_at<'a, 'i>(root: &'a DeTable<'i>, steps: &[Step]) -> Option<&'a DeValue<'i>> {
    let (first, rest) = steps.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut v = root.get(k.as_str())?.get_ref();
    for step in rest {
        v = match (step, v) {
            (Step::Key(k), DeValue::Table(t)) => t.get(k.as_str())?.get_ref(),
            (Step::Index(i), DeValue::Array(a)) => a.get(*i)?.get_ref(),
            _ => return None,
        };
    }
    Some(v)
}

/// Removes the entry at `steps` from the document; false when there is none (the root).
fn remove(root: &mut DeTable<'_>, steps: &[Step]) -> bool {
    let Some((last, parent)) = steps.split_last() else {
        return false;
    };
    let container: &mut DeValue<'_> = match parent.split_first() {
        None => {
            return match last {
                Step::Key(k) => root.remove(k.as_str()).is_some(),
                Step::Index(_) => false,
            };
        }
        Some((Step::Key(k), rest)) => {
            let Some(mut v) = root.get_mut(k.as_str()).map(|v| v.get_mut()) else {
                return false;
            };
            for step in rest {
                v = match (step, v) {
                    (Step::Key(k), DeValue::Table(t)) => match t.get_mut(k.as_str()) {
                        Some(x) => x.get_mut(),
                        None => return false,
                    },
                    (Step::Index(i), DeValue::Array(a)) => match a.get_mut(*i) {
                        Some(x) => x.get_mut(),
                        None => return false,
                    },
                    _ => return false,
                };
            }
            v
        }
        Some((Step::Index(_), _)) => return false,
    };
    match (last, container) {
        (Step::Key(k), DeValue::Table(t)) => t.remove(k.as_str()).is_some(),
        (Step::Index(i), DeValue::Array(a)) if *i < a.len() => {
            let mut kept = DeArray::new();
            for (j, item) in a.iter().enumerate() {
                if j != *i {
                    kept.push(item.clone());
                }
            }
            *a = kept;
            true
        }
        _ => false,
    }
}

/// A problem found while reading the file: the byte offset it points at (none when the parser
/// gave no place), the key path and what is wrong.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) at: Option<usize>,
    pub(crate) path: String,
    pub(crate) message: String,
}

/// The parsed document: the text's line index, the places of every key and the tree itself.
pub(crate) struct Document<'i> {
    pub(crate) root: Spanned<DeTable<'i>>,
    pub(crate) lines: LineIndex,
    pub(crate) positions: Positions,
}

impl<'i> Document<'i> {
    /// Parses `text`; every syntax error the parser can recover from is reported.
    pub(crate) fn parse(text: &'i str) -> Result<Self, Vec<Problem>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let lines = LineIndex::new(text);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| {
                    let mut path = e
                        .span()
                        .map(|s| path_text(&locate(root.get_ref(), &s, None).0))
                        .unwrap_or_default();
                    let mut message = e.message().trim().to_owned();
                    if message == "duplicate key" {
                        // The repeated key is not in the parsed tree: name it from the text.
                        if path.is_empty()
                            && let Some(k) = e.span().and_then(|s| text.get(s))
                        {
                            path = k.trim().to_owned();
                        }
                        message.push_str(": this table already sets it; keep one");
                    }
                    Problem {
                        at: e.span().map(|s| s.start),
                        path,
                        message,
                    }
                })
                .collect());
        }
        let positions = Positions::build(root.get_ref(), &lines);
        Ok(Self {
            root,
            lines,
            positions,
        })
    }

    /// The index, in the file, of the array element at `array` (`webhook`) whose span is `span`
    /// in a working copy (elements dropped for a problem shift the others).
    fn original_index(&self, array: &str, span: &Range<usize>) -> Option<usize> {
        match self.root.get_ref().get(array)?.get_ref() {
            DeValue::Array(a) => a.iter().position(|item| item.span() == *span),
            _ => None,
        }
    }
}

/// Deserializes `T` from the document, reporting every problem serde finds: after each error the
/// entry it points at is removed from a working copy (its default then applies, or the table
/// holding it is dropped) and deserialization runs again. A problem caused by an earlier removal
/// (a required key removed for its wrong type is then "missing") is not reported twice; a key
/// that is missing in its own right is. Returns
/// the value (when one could be built at all), the problems, and for each array of tables named
/// in `arrays` the file index of every element kept.
pub(crate) fn deserialize_all<T: DeserializeOwned>(
    doc: &Document<'_>,
    arrays: &[&str],
) -> (Option<T>, Vec<Problem>, BTreeMap<String, Vec<usize>>) {
    let mut work = doc.root.clone();
    let mut problems: Vec<Problem> = Vec::new();
    let mut reported: Vec<Vec<Step>> = Vec::new();
    // Every removal takes an entry away, so this ends; the bound is a second guard.
    for _ in 0..=doc.positions.places.len() + 1 {
        match T::deserialize(toml::de::Deserializer::from(work.clone())) {
            Ok(v) => {
                let kept = arrays
                    .iter()
                    .map(|name| {
                        let idx = match work.get_ref().get(*name).map(|v| v.get_ref()) {
                            Some(DeValue::Array(a)) => a
                                .iter()
                                .filter_map(|item| doc.original_index(name, &item.span()))
                                .collect(),
                            _ => Vec::new(),
                        };
                        ((*name).to_owned(), idx)
                    })
                    .collect();
                return (Some(v), problems, kept);
            }
            Err(e) => {
                let message = with_hint(e.message().trim());
                let field = unknown_field(&message);
                let Some(span) = e.span() else {
                    problems.push(Problem {
                        at: None,
                        path: String::new(),
                        message,
                    });
                    break;
                };
                let (steps, at) = locate(doc.root.get_ref(), &span, field.as_deref());
                // "missing field `x`" right after `x` itself was removed for a problem.
                let consequence = missing_field(&message).is_some_and(|x| {
                    reported.iter().any(|r| {
                        r.len() == steps.len() + 1
                            && r.starts_with(&steps)
                            && r.last() == Some(&Step::Key(x.clone()))
                    })
                });
                if !consequence {
                    problems.push(Problem {
                        at: Some(at),
                        path: path_text(&steps),
                        message,
                    });
                    reported.push(steps);
                }
                let (work_steps, _) = locate(work.get_ref(), &span, field.as_deref());
                if !remove(work.get_mut(), &work_steps) {
                    break;
                }
            }
        }
    }
    (None, problems, BTreeMap::new())
}

/// Serde's message with what to do, where serde does not say it: a missing key to add, a value
/// of the wrong type to rewrite.
fn with_hint(message: &str) -> String {
    if message.contains("untagged enum Raw") {
        // The duration helper's "seconds or text" wrapper.
        return "not a duration: write it like \"30s\", \"500ms\", \"5m\", \"1h 30m\" or \"7d\""
            .into();
    }
    let hint = if let Some(rest) = message.strip_prefix("missing field `") {
        let key = &rest[..rest.find('`').unwrap_or(rest.len())];
        format!("add `{key} = …` to this table")
    } else if message.starts_with("invalid type:") {
        let expected = message.rsplit("expected ").next().unwrap_or("");
        match expected {
            "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
                "write a whole number without quotes".to_owned()
            }
            "f32" | "f64" => "write a number without quotes".to_owned(),
            "a boolean" => "write true or false without quotes".to_owned(),
            e if e.contains("tagged enum") || e.starts_with("struct") || e.contains("map") => {
                "write a table: { type = \"…\", … } or a [section]".to_owned()
            }
            e if e.contains("string") => "write the value in double quotes".to_owned(),
            e if e.contains("sequence") => "write a list: [\"a\", \"b\"]".to_owned(),
            _ => return message.to_owned(),
        }
    } else {
        return message.to_owned();
    };
    format!("{message}: {hint}")
}

/// `x` of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// `x` of serde's "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let l = LineIndex::new("a = 1\nbé = \"x\"\n");
        assert_eq!(l.line_col(0), (1, 1));
        assert_eq!(l.line_col(6), (2, 1));
        // "é" is two bytes, one column.
        assert_eq!(l.line_col(10), (2, 4));
    }

    #[test]
    fn positions_of_keys_in_repeated_tables() {
        let text =
            "[[webhook]]\nname = \"a\"\n[[webhook]]\nname = \"b\"\nauth = { type = \"x\" }\n";
        let doc = Document::parse(text).unwrap();
        let p = &doc.positions;
        assert_eq!(p.get("webhook[0].name"), Some((2, 1)));
        assert_eq!(p.get("webhook[1].name"), Some((4, 1)));
        assert_eq!(p.get("webhook[1].auth.type"), Some((5, 10)));
        assert_eq!(p.nearest("webhook[1].auth.token"), (5, 1));
        assert_eq!(p.nearest("webhook[1].signing.secret"), (3, 1));
        assert_eq!(p.nearest("storage.path"), (0, 0));
    }
}
