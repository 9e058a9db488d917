//! A tiny `--key value` / `--flag` parser for the stack and demo commands (no CLI crate
//! needed for a handful of options).

use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::str::FromStr;

#[derive(Debug, Default)]
pub struct Args {
    values: BTreeMap<String, Option<String>>,
}

impl Args {
    /// `--key value`, `--key=value` and `--flag` (a flag is followed by another option or nothing).
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}")
            };
            if let Some((k, v)) = name.split_once('=') {
                values.insert(k.to_owned(), Some(v.to_owned()));
            } else if it.peek().is_some_and(|n| !n.starts_with("--")) {
                values.insert(name.to_owned(), it.next().cloned());
            } else {
                values.insert(name.to_owned(), None);
            }
        }
        Ok(Self { values })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.as_deref())
    }

    pub fn parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.value(name) {
            None if self.flag(name) => bail!("--{name} needs a value"),
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("--{name} {v:?}")),
        }
    }

    pub fn reject_unknown(&self, known: &[&str]) -> Result<()> {
        for k in self.values.keys() {
            if !known.contains(&k.as_str()) {
                bail!(
                    "unknown option --{k} (known: {})",
                    known
                        .iter()
                        .map(|k| format!("--{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Args {
        Args::parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>()).expect("parses")
    }

    #[test]
    fn values_flags_and_equals_forms() {
        let a = args("--updates 100 --keep-running --seed=7");
        assert_eq!(a.parsed::<usize>("updates").expect("number"), Some(100));
        assert!(a.flag("keep-running"));
        assert_eq!(a.value("seed"), Some("7"));
        assert!(a.reject_unknown(&["updates", "keep-running"]).is_err());
        assert!(args("--updates many").parsed::<usize>("updates").is_err());
    }
}
