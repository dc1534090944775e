//! `OFFBOARD__SECTION__KEY=value` overrides, applied to the parsed TOML
//! before it is turned into typed configuration, so an override is
//! validated exactly like the file.

use super::ConfigError;

const PREFIX: &str = "OFFBOARD__";

pub(super) fn apply_overrides(
    table: &mut toml::Table,
    vars: &[(String, String)],
) -> Result<(), ConfigError> {
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Override {
                var: name.clone(),
                message: "has an empty key segment".into(),
            });
        }
        set_path(table, &path, parse_value(raw)).map_err(|e| ConfigError::Override {
            var: name.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// The first `OFFBOARD__…` variable whose override makes `fails` true of
/// `file`, applied in order; `None` when the file fails on its own.
pub(super) fn culprit(
    file: &toml::Table,
    vars: &[(String, String)],
    fails: impl Fn(toml::Table) -> bool,
) -> Option<String> {
    if fails(file.clone()) {
        return None;
    }
    let mut table = file.clone();
    for var in vars.iter().filter(|(name, _)| name.starts_with(PREFIX)) {
        apply_overrides(&mut table, std::slice::from_ref(var)).ok()?;
        if fails(table.clone()) {
            return Some(var.0.clone());
        }
    }
    None
}

/// A value is read as TOML when it parses as one (numbers, booleans,
/// arrays), otherwise as a plain string, so `OFFBOARD__DATABASE__URL=sqlite://x`
/// needs no quoting.
fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

/// Why an override cannot be placed in the table.
#[derive(Debug, thiserror::Error)]
enum PathError {
    #[error("names no key")]
    NoKey,
    #[error("`{0}` is not a table in the config file")]
    NotATable(String),
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), PathError> {
    let (last, parents) = path.split_last().ok_or(PathError::NoKey)?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| PathError::NotATable(key.clone()))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}
