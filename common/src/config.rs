//! `--config FILE`: every flag of a binary can be set in a TOML file under its own name
//! (`worker_hosts = ["w1:9000", "w2:9000"]`, `max_pages = 5000`, `ignore_robots = true`).
//!
//! The clap definitions stay the one source of truth: the file's keys are the flags' long
//! names (or their aliases), and its values reach clap as if typed, so every value is checked
//! by the flag's own parser. Precedence is flag > environment variable > file > built-in
//! default: a file value is used only for a flag that neither the command line nor its
//! environment variable set. Unknown keys are an error naming the file, the line and the key.

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The id of the `--config` flag every binary declares.
pub const CONFIG_ID: &str = "config";

/// The largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The TOML parser's message (with the line).
        message: String,
    },
    /// A key that names no flag.
    #[error("{path}:{line}: unknown key {key:?}: not a flag of {program}")]
    UnknownKey {
        /// The file.
        path: String,
        /// The key's line (from 1).
        line: usize,
        /// The key.
        key: String,
        /// The binary.
        program: String,
    },
    /// A value of a kind the flag cannot take.
    #[error("{path}:{line}: {key}: {what}")]
    BadValue {
        /// The file.
        path: String,
        /// The key's line (from 1).
        line: usize,
        /// The key.
        key: String,
        /// What is wrong.
        what: String,
    },
}

/// Why the arguments could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// clap refused them (or was asked for help or the version).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The config file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Parsed arguments, with where each value came from.
#[derive(Debug)]
pub struct Loaded<P> {
    /// The arguments.
    pub args: P,
    /// The merged configuration, one `key = value  # source` line per flag that has a value.
    pub described: String,
}

/// Parses the process's arguments with `--config` applied; on an error prints it and exits
/// (2, as for any usage error; 0 for `--help` and `--version`).
pub fn parse<P: Parser>() -> P {
    parse_loaded::<P>().args
}

/// [`parse`], keeping the description of the merged configuration.
pub fn parse_loaded<P: Parser>() -> Loaded<P> {
    match load::<P>(std::env::args_os().collect()) {
        Ok(loaded) => loaded,
        Err(LoadError::Clap(e)) => e.exit(),
        Err(LoadError::Config(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}

/// The long names and aliases of `arg`, with `-` read as `_`.
fn names(arg: &clap::Arg) -> impl Iterator<Item = String> + '_ {
    arg.get_long()
        .into_iter()
        .chain(arg.get_all_aliases().unwrap_or_default())
        .map(|n| n.replace('-', "_"))
}

/// The line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A TOML value as the strings a flag would be given.
fn as_strings(value: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(d) => Ok(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => {
            Err("a list may hold only strings, numbers and booleans".to_owned())
        }
    };
    match value {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        toml::Value::Table(_) => Err("expected a value, not a table".to_owned()),
        v => one(v).map(|s| vec![s]),
    }
}

/// Reads the file's keys as command-line arguments for the flags the command line and the
/// environment left unset (per `given`); returns them and the ids they set.
fn file_arguments(
    path: &Path,
    command: &clap::Command,
    given: &ArgMatches,
) -> Result<(Vec<OsString>, BTreeSet<String>), ConfigError> {
    let shown = path.display().to_string();
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_CONFIG_BYTES), &mut text)
        .map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
    let syntax = |message: String| ConfigError::Syntax {
        path: shown.clone(),
        message: message.trim().replace('\n', " "),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax(e.to_string()))?;
    let spans = toml::de::DeTable::parse(&text).map_err(|e| syntax(e.to_string()))?;
    let line = |key: &str| {
        spans
            .get_ref()
            .keys()
            .find(|k| k.get_ref() == key)
            .map_or(1, |k| line_of(&text, k.span().start))
    };
    let set = |id: &str| {
        matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    // What the flags given conflict with.
    let blocked: BTreeSet<String> = command
        .get_arguments()
        .filter(|a| set(a.get_id().as_str()))
        .flat_map(|a| command.get_arg_conflicts_with(a))
        .map(|a| a.get_id().to_string())
        .collect();
    let mut argv = Vec::new();
    let mut ids = BTreeSet::new();
    for (key, value) in &table {
        let wanted = key.replace('-', "_");
        let arg = command
            .get_arguments()
            .filter(|a| a.get_id() != CONFIG_ID)
            .find(|a| names(a).any(|n| n == wanted));
        let Some(arg) = arg else {
            return Err(ConfigError::UnknownKey {
                path: shown,
                line: line(key),
                key: key.clone(),
                program: command.get_name().to_owned(),
            });
        };
        let id = arg.get_id().as_str();
        // A flag given, or one it conflicts with either way (`--no_state` against a file's
        // `state`), wins over the file.
        if set(id)
            || command
                .get_arg_conflicts_with(arg)
                .iter()
                .any(|other| set(other.get_id().as_str()))
            || blocked.contains(id)
        {
            continue;
        }
        let bad = |what: String| ConfigError::BadValue {
            path: shown.clone(),
            line: line(key),
            key: key.clone(),
            what,
        };
        let long = arg.get_long().unwrap_or(id);
        if !arg.get_action().takes_values() {
            match value {
                toml::Value::Boolean(true) => argv.push(OsString::from(format!("--{long}"))),
                toml::Value::Boolean(false) => {}
                _ => return Err(bad("expected true or false".to_owned())),
            }
        } else {
            for v in as_strings(value).map_err(bad)? {
                argv.push(OsString::from(format!("--{long}={v}")));
            }
        }
        ids.insert(id.to_owned());
    }
    Ok((argv, ids))
}

/// Parses `argv` (program name first) as `P`, with the file named by `--config` (or its
/// variable) filling in the flags the command line and the environment left unset.
pub fn load<P: Parser>(argv: Vec<OsString>) -> Result<Loaded<P>, LoadError> {
    let command = P::command();
    // What the command line and the environment give, errors aside: --config, and the flags
    // the file must not override.
    let given = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)?;
    let config = given.try_get_one::<PathBuf>(CONFIG_ID).ok().flatten();
    // A subcommand (`itemsaver export`) takes its own flags, not the file's.
    let (from_file, file_ids) = match config {
        Some(path) if given.subcommand_name().is_none() => file_arguments(path, &command, &given)?,
        _ => Default::default(),
    };
    let mut merged = Vec::with_capacity(argv.len() + from_file.len());
    let mut rest = argv.into_iter();
    merged.extend(rest.next());
    merged.extend(from_file);
    merged.extend(rest);
    let matches = command.clone().try_get_matches_from(merged)?;
    let args = P::from_arg_matches(&matches)?;
    Ok(Loaded {
        args,
        described: describe(&command, &matches, &file_ids),
    })
}

/// One line per flag with a value: `key = value  # source`.
fn describe(command: &clap::Command, matches: &ArgMatches, file_ids: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if long.replace('-', "_") == "print_config" {
            continue;
        }
        let Some(source) = matches.value_source(id) else {
            continue;
        };
        let source = match source {
            _ if file_ids.contains(id) => "file".to_owned(),
            ValueSource::CommandLine => "flag".to_owned(),
            ValueSource::EnvVariable => arg.get_env().map_or("environment".to_owned(), |e| {
                e.to_string_lossy().into_owned()
            }),
            _ => "default".to_owned(),
        };
        let value = if arg.get_action().takes_values() {
            let raw: Vec<String> = matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| format!("{:?}", v.to_string_lossy()))
                .collect();
            match raw.as_slice() {
                [one] if !matches!(arg.get_action(), clap::ArgAction::Append) => one.clone(),
                _ => format!("[{}]", raw.join(", ")),
            }
        } else {
            matches.get_flag(id).to_string()
        };
        let value = if arg.is_hide_env_values_set() && source != "default" {
            "\"(hidden)\"".to_owned()
        } else {
            value
        };
        out.push_str(&format!(
            "{} = {value}  # {source}\n",
            long.replace('-', "_")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    #[command(name = "demo")]
    struct Demo {
        #[arg(long, env = "SPINNERET_TEST_CONFIG_FILE")]
        config: Option<PathBuf>,
        #[arg(
            long = "max_pages",
            env = "SPINNERET_TEST_MAX_PAGES",
            default_value_t = 10
        )]
        max_pages: u64,
        #[arg(long = "seed", alias = "seeds")]
        seeds: Vec<String>,
        #[arg(long = "ignore_robots")]
        ignore_robots: bool,
        #[arg(long = "user_agent", default_value = "ua")]
        user_agent: String,
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        f
    }

    fn load_demo(args: &[&str]) -> Result<Loaded<Demo>, LoadError> {
        load::<Demo>(
            std::iter::once("demo")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect(),
        )
    }

    #[test]
    fn the_file_sets_every_kind_of_value_and_a_flag_beats_it() {
        let f = file(
            "max_pages = 5\nseeds = [\"http://a/\", \"http://b/\"]\nignore_robots = true\nuser_agent = \"bot\"\n",
        );
        let path = f.path().to_str().expect("path");
        let loaded = load_demo(&["--config", path]).expect("load");
        assert_eq!(loaded.args.max_pages, 5);
        assert_eq!(loaded.args.seeds, vec!["http://a/", "http://b/"]);
        assert!(loaded.args.ignore_robots);
        assert_eq!(loaded.args.user_agent, "bot");
        assert!(
            loaded.described.contains("max_pages = \"5\"  # file"),
            "{}",
            loaded.described
        );
        let loaded = load_demo(&["--config", path, "--max_pages", "7", "--seed", "http://c/"])
            .expect("load");
        assert_eq!(loaded.args.max_pages, 7);
        assert_eq!(loaded.args.seeds, vec!["http://c/"]);
        assert!(
            loaded.described.contains("max_pages = \"7\"  # flag"),
            "{}",
            loaded.described
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_line_and_key() {
        let f = file("max_pages = 5\n\nmax_pagez = 6\n");
        let path = f.path().to_str().expect("path");
        let err = load_demo(&["--config", path])
            .expect_err("unknown key")
            .to_string();
        assert_eq!(
            err,
            format!("{path}:3: unknown key \"max_pagez\": not a flag of demo")
        );
        let f = file("ignore_robots = \"yes\"\n");
        let path = f.path().to_str().expect("path");
        let err = load_demo(&["--config", path])
            .expect_err("bad value")
            .to_string();
        assert!(
            err.starts_with(&format!("{path}:1: ignore_robots")),
            "{err}"
        );
        // A value the flag's own parser refuses is a usage error from clap.
        let f = file("max_pages = -3\n");
        let path = f.path().to_str().expect("path");
        assert!(matches!(
            load_demo(&["--config", path]),
            Err(LoadError::Clap(_))
        ));
    }
}
