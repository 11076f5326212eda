//! TOML recipes shared by training (`realsyn train --recipe`) and the builder
//! (`realsyn build all --recipe`): read with a nesting cap, `--set KEY=VALUE`
//! overrides on dotted keys, and the keys a typed recipe did not take (typos).

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Read a TOML file (nesting capped) and apply `KEY=VALUE` overrides.
pub fn load_with_overrides(path: &Path, overrides: &[String]) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading recipe {}", path.display()))?;
    check_nesting(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    Ok(table)
}

/// The dotted keys of `given` that `taken` (the typed recipe written back) lacks:
/// fields the recipe type does not have. Works through flattened and tagged serde
/// types, where `deny_unknown_fields` cannot.
pub fn unknown_keys(given: &toml::Table, taken: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(given, taken, "", &mut out);
    out
}

fn walk_unknown(given: &toml::Table, taken: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in given {
        let key = format!("{prefix}{k}");
        match (v, taken.get(k)) {
            (_, None) => out.push(key),
            (toml::Value::Table(g), Some(toml::Value::Table(t))) => {
                walk_unknown(g, t, &format!("{key}."), out)
            }
            _ => {}
        }
    }
}

/// Refuse a typed recipe's unknown keys, naming the known keys beside each.
pub fn refuse_unknown_keys(given: &toml::Table, taken: &toml::Table, what: &str) -> Result<()> {
    let unknown = unknown_keys(given, taken);
    if unknown.is_empty() {
        return Ok(());
    }
    let known = |key: &str| -> String {
        let mut t = taken;
        let parts: Vec<&str> = key.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            match t.get(*p) {
                Some(toml::Value::Table(sub)) => t = sub,
                _ => return String::new(),
            }
        }
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        format!(" (known here: {})", keys.join(", "))
    };
    bail!(
        "{what}: unknown keys {}",
        unknown
            .iter()
            .map(|k| format!("{k}{}", known(k)))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .with_context(|| format!("override {spec:?} must be KEY=VALUE, e.g. train.lr=5e-4"))?;
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("override {spec:?}: {p} is not a section"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Arrays and inline tables nested deeper than this are refused before parsing.
pub const MAX_TOML_NESTING: usize = 64;

/// Refuse TOML whose arrays or inline tables nest deeper than [`MAX_TOML_NESTING`]:
/// the `toml` parser recurses per level, and a corrupt recipe of 450,000 `[` (found by
/// fuzzing) overflowed the stack, which aborts the process instead of failing. One
/// pass, skipping strings and comments; table headers (`[a]`, `[[a]]`) close at once.
pub fn check_nesting(text: &str) -> Result<()> {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                let quote = c;
                while let Some(c) = chars.next() {
                    if c == '\\' && quote == '"' {
                        chars.next();
                    } else if c == quote || c == '\n' {
                        break;
                    }
                }
            }
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
                if max > MAX_TOML_NESTING {
                    bail!(
                        "arrays or inline tables nest deeper than {MAX_TOML_NESTING} levels \
                         (a corrupt recipe?)"
                    );
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_dotted_keys_and_typos_are_found() {
        let mut t: toml::Table = toml::from_str("[a]\nx = 1\n").unwrap();
        apply_override(&mut t, "a.y=[1, 2]").unwrap();
        apply_override(&mut t, "b.z=word").unwrap();
        assert_eq!(t["a"]["y"].as_array().unwrap().len(), 2);
        assert_eq!(t["b"]["z"].as_str(), Some("word"));
        let taken: toml::Table = toml::from_str("[a]\nx = 1\ny = [1, 2]\n").unwrap();
        assert_eq!(unknown_keys(&t, &taken), vec!["b".to_string()]);
        let err = refuse_unknown_keys(&t, &taken, "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown keys b"), "{err}");
        assert!(apply_override(&mut t, "no-equals").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        assert!(check_nesting(&"[".repeat(100)).is_err());
        assert!(check_nesting("a = [[1], [2]] # [[[[[[").is_ok());
    }
}
