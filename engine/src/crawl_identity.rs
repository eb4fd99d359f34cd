//! Which crawl a state directory holds: the choices that make a crawl this one and not
//! another (its task, seeds, spider or parser, scope and store). An unfinished state is only
//! carried on by an engine that asks for the same crawl, or by `--resume`, which carries it on
//! as it was; anything else is refused, so that two crawls never mix in one state or store.

use crate::config::{EngineConfig, SpiderRun};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The crawl a state directory belongs to, as recorded when the crawl started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrawlIdentity {
    /// The engine's own task's name.
    pub task: String,
    /// The canonical seeds.
    pub seeds: Vec<String>,
    /// The parser, when no spider runs.
    pub parser: String,
    /// The spider file run, if any.
    pub spider: Option<SpiderMark>,
    /// `--allow_domain`s (empty: the seeds' hosts).
    pub allow_domains: Vec<String>,
    /// Where the items go.
    pub items: ItemsAt,
}

/// A spider as a state records it: its name and content hash, and its text so that
/// `--resume` can run it again as it was.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpiderMark {
    /// The spider's name.
    pub name: String,
    /// Its content hash: two spiders are the same crawl when their hashes agree.
    pub hash: u64,
    /// The file's text.
    pub source: String,
}

impl PartialEq for SpiderMark {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for SpiderMark {}

/// Where a crawl's items go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemsAt {
    /// A store this engine writes itself: `--store` (an absolute path, or a PostgreSQL URL
    /// without its password).
    Store(String),
    /// An itemsaver (its address is not part of the crawl: it may move).
    Itemsaver,
}

/// A part of a crawl in which two identities differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The task name.
    Task,
    /// The seeds.
    Seeds,
    /// The spider or parser.
    Spider,
    /// The allowed domains.
    Scope,
    /// The store.
    Store,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Task => "task",
            Part::Seeds => "seeds",
            Part::Spider => "spider or parser",
            Part::Scope => "allowed domains",
            Part::Store => "store",
        })
    }
}

/// Why a state's crawl cannot be carried on as it was.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The spider the state recorded no longer compiles.
    #[error("the state's spider {name:?} no longer compiles: {cause}")]
    Spider {
        /// The spider's name.
        name: String,
        /// Why.
        cause: String,
    },
    /// A recorded seed is no longer a URL.
    #[error("the state's seed {0:?} is not a URL")]
    Seed(String),
    /// The state's items went to an itemsaver, whose address a state does not keep.
    #[error("the state's items go to an itemsaver: give --itemsaver_host with --resume")]
    Itemsaver,
    /// The state's store is a PostgreSQL database, whose password a state never keeps.
    #[error(
        "the state's items go to {0}, whose password the state does not keep: give that --store with --resume"
    )]
    Password(String),
}

impl CrawlIdentity {
    /// The crawl `config` asks for.
    pub fn of(config: &EngineConfig) -> CrawlIdentity {
        // Sets, not lists: the same seeds or domains given in another order are one crawl.
        let set = |items: Vec<String>| -> Vec<String> {
            let set: std::collections::BTreeSet<String> = items.into_iter().collect();
            set.into_iter().collect()
        };
        CrawlIdentity {
            task: config.task.clone(),
            seeds: set(config.seeds.iter().map(|s| s.to_string()).collect()),
            parser: match &config.spider {
                Some(_) => String::new(),
                None => config.parser.clone(),
            },
            spider: config.spider.as_ref().map(|s| SpiderMark {
                name: s.name.clone(),
                hash: s.hash,
                source: s.source.clone(),
            }),
            allow_domains: set(config.allow_domains.clone()),
            items: match &config.itemsaver_host {
                Some(_) => ItemsAt::Itemsaver,
                None => ItemsAt::Store(store_name(&config.store)),
            },
        }
    }

    /// The parts in which `other` asks for another crawl than this one.
    pub fn differences(&self, other: &CrawlIdentity) -> Vec<Part> {
        let mut parts = Vec::new();
        if self.task != other.task {
            parts.push(Part::Task);
        }
        if self.seeds != other.seeds {
            parts.push(Part::Seeds);
        }
        if self.spider != other.spider || self.parser != other.parser {
            parts.push(Part::Spider);
        }
        if self.allow_domains != other.allow_domains {
            parts.push(Part::Scope);
        }
        if self.items != other.items {
            parts.push(Part::Store);
        }
        parts
    }

    /// Sets `config` to carry on this crawl as it was (`--resume`): its seeds, spider or
    /// parser, scope and store replace the flags given. The task name already agrees (it
    /// names the default state directory) or was given for this state.
    pub fn apply_to(&self, config: &mut EngineConfig) -> Result<(), IdentityError> {
        config.task = self.task.clone();
        config.seeds = self
            .seeds
            .iter()
            .map(|s| url::Url::parse(s).map_err(|_| IdentityError::Seed(s.clone())))
            .collect::<Result<_, _>>()?;
        config.allow_domains = self.allow_domains.clone();
        match &self.spider {
            Some(mark) if config.spider.as_ref().map(|s| s.hash) != Some(mark.hash) => {
                let (run, _) =
                    SpiderRun::compile(&mark.name, mark.source.clone()).map_err(|e| {
                        IdentityError::Spider {
                            name: mark.name.clone(),
                            cause: e.to_string(),
                        }
                    })?;
                config.spider = Some(run);
            }
            Some(_) => {}
            None => {
                config.spider = None;
                config.parser = self.parser.clone();
            }
        }
        if self.items == ItemsAt::Itemsaver && config.itemsaver_host.is_none() {
            return Err(IdentityError::Itemsaver);
        }
        if let ItemsAt::Store(store) = &self.items
            && (config.itemsaver_host.is_some() || store_name(&config.store) != *store)
        {
            if store.starts_with("postgres") {
                return Err(IdentityError::Password(store.clone()));
            }
            config.itemsaver_host = None;
            config.store = store
                .parse()
                .map_err(|_| IdentityError::Password(store.clone()))?;
        }
        Ok(())
    }
}

impl fmt::Display for CrawlIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {:?}", self.task)?;
        match self.seeds.as_slice() {
            [] => {}
            [one] => write!(f, " from {one}")?,
            [one, rest @ ..] => write!(f, " from {one} and {} more", rest.len())?,
        }
        match &self.spider {
            Some(s) => write!(f, ", spider {:?}", s.name)?,
            None => write!(f, ", parser {}", self.parser)?,
        }
        match &self.items {
            ItemsAt::Store(store) => write!(f, ", items in {store}"),
            ItemsAt::Itemsaver => write!(f, ", items to an itemsaver"),
        }
    }
}

/// How a store is named in a state: an SQLite or JSON Lines file by its absolute path (the
/// same file from the same directory, however it was written), PostgreSQL without a password.
fn store_name(store: &itemsaver::StoreSpec) -> String {
    use itemsaver::StoreSpec;
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    match store {
        StoreSpec::Sqlite(path) => format!("sqlite:{}", absolute(path).display()),
        StoreSpec::Jsonl(path) => format!("jsonl:{}", absolute(path).display()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: &str, store: &str) -> EngineConfig {
        EngineConfig {
            seeds: vec![url::Url::parse(seed).expect("url")],
            store: store.parse().expect("store"),
            ..EngineConfig::default()
        }
    }

    #[test]
    fn another_seed_or_store_is_another_crawl_and_resume_takes_the_states() {
        let a = CrawlIdentity::of(&config("http://a.test/", "a.db"));
        let b = CrawlIdentity::of(&config("http://b.test/", "b.db"));
        assert_eq!(a.differences(&a.clone()), Vec::<Part>::new());
        let mut two = config("http://a.test/", "a.db");
        two.seeds
            .push(url::Url::parse("http://c.test/").expect("url"));
        let mut swapped = two.clone();
        swapped.seeds.reverse();
        assert_eq!(
            CrawlIdentity::of(&two).differences(&CrawlIdentity::of(&swapped)),
            Vec::<Part>::new(),
            "the same seeds in another order are the same crawl"
        );
        assert_eq!(a.differences(&b), vec![Part::Seeds, Part::Store]);
        let mut resumed = config("http://b.test/", "b.db");
        a.apply_to(&mut resumed).expect("apply");
        assert_eq!(CrawlIdentity::of(&resumed), a);
        let shown = a.to_string();
        assert!(
            shown.contains("http://a.test/") && shown.contains("a.db"),
            "{shown}"
        );
    }
}
