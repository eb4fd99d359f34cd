//! Declarative spiders end to end: a spider file crawled through running workers.

use spinneret_tests::TestSite;
use spinneret_tests::binaries::{Server, export, run_bin, run_engine};
use spinneret_tests::quotes::{AUTHORLESS, AUTHORS, PER_PAGE, QuotesSite};
use spinneret_tests::site::QUOTE_PAGES;
use std::collections::BTreeSet;

const QUOTES_SPIDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../spiders/quotes.toml");

/// Every item the quotes spider must store, as (kind, id, fields) in JSON.
fn expected_items(site: &TestSite) -> BTreeSet<String> {
    let quotes = QuotesSite { pages: QUOTE_PAGES };
    let mut expected = BTreeSet::new();
    for page in 1..=QUOTE_PAGES {
        let url = site.url(&format!("/quotes/page/{page}/"));
        // Position-keyed ids number the items a page keeps: a dropped quote takes no number.
        let mut position = 0;
        for on_page in 0..PER_PAGE {
            let i = (page - 1) * PER_PAGE + on_page;
            let q = quotes.quote(i);
            let Some(author) = q.author else { continue };
            position += 1;
            let position = position - 1;
            expected.insert(
                serde_json::json!({
                    "kind": "quote", "id": format!("{url}#quote-{position}"), "url": url,
                    "text": q.text, "author": AUTHORS[author].1, "tags": q.tags,
                })
                .to_string(),
            );
        }
    }
    for (slug, name, born, bio) in AUTHORS {
        expected.insert(
            serde_json::json!({
                "kind": "author", "id": name, "url": site.url(&format!("/quotes/author/{slug}/")),
                "name": name, "born": born, "bio": bio,
            })
            .to_string(),
        );
    }
    expected
}

/// Stored items as (kind, id, fields) in JSON, without the task and the store's times.
fn stored_items(items: Vec<serde_json::Value>, task: &str) -> BTreeSet<String> {
    items
        .into_iter()
        .map(|mut item| {
            assert_eq!(item["task"], task);
            if let Some(o) = item.as_object_mut() {
                for key in ["task", "stored_at", "updated_at"] {
                    o.remove(key);
                }
            }
            item.to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spider_crawl_through_two_workers_stores_exactly_the_sites_items() {
    let dir = tempfile::tempdir().expect("tempdir");
    let site = TestSite::start(10).await.expect("site");
    let store = dir.path().join("items.db");
    let store_arg = store.display().to_string();
    let saver = Server::start("itemsaver", &["--store", &store_arg], dir.path()).await;
    let w0 = Server::start("worker", &[], dir.path()).await;
    let w1 = Server::start("worker", &[], dir.path()).await;
    let distributed = |spider: String, task: &str| {
        vec![
            format!("--itemsaver_host={}", saver.addr),
            format!("--worker_hosts={},{}", w0.addr, w1.addr),
            format!("--spider={spider}"),
            format!("--seed={}", site.url("/quotes/page/1/")),
            format!("--task={task}"),
        ]
    };

    let run = run_engine(dir.path(), &distributed(QUOTES_SPIDER.into(), "quotes")).await;
    assert!(
        run.status.success(),
        "engine failed: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        stored_items(export(&store).await, "quotes"),
        expected_items(&site)
    );
    let summary = run.summary();
    assert_eq!(
        summary["items_dropped"], 1,
        "quote {AUTHORLESS} has no author: {summary}"
    );
    assert_eq!(summary["pages_ok"], (QUOTE_PAGES + AUTHORS.len()) as u64);
    for w in summary["workers"].as_array().expect("workers") {
        assert!(
            w["requests"].as_u64().unwrap_or(0) > 0,
            "both workers take part: {summary}"
        );
    }
    for w in [&w0, &w1] {
        assert_eq!(
            w.logs().matches("spider loaded").count(),
            1,
            "sent once per worker, not per request"
        );
    }

    // A new spider on the same, still-running workers: no rebuild, no restart.
    let authors_only = dir.path().join("authors.toml");
    std::fs::write(
        &authors_only,
        "name = \"authors\"\n\
         [[rule]]\nname = \"list\"\n\
         [[rule.follow]]\nselector = \"li.next a\"\nrule = \"list\"\n\
         [[rule.follow]]\nselector = \".quote a\"\nrule = \"author\"\n\
         [[rule]]\nname = \"author\"\n\
         [[rule.extract]]\nkind = \"person\"\nid = \"name\"\n\
         fields.name = { selector = \"h3\" }\n\
         fields.year = { selector = \".author-born-date\", regex = \"(\\\\d{4})\", type = \"integer\" }\n",
    )
    .expect("write spider");
    let run = run_engine(
        dir.path(),
        &distributed(authors_only.display().to_string(), "people"),
    )
    .await;
    assert!(run.status.success(), "engine failed: {}", run.stderr);
    let people: Vec<serde_json::Value> = export(&store)
        .await
        .into_iter()
        .filter(|i| i["task"] == "people")
        .collect();
    assert_eq!(people.len(), AUTHORS.len());
    let ada = people
        .iter()
        .find(|p| p["id"] == "Ada Lovelace")
        .expect("Ada");
    assert_eq!(ada["year"], 1815);
}

#[tokio::test]
async fn check_spider_accepts_a_valid_file() {
    let (status, stdout, stderr) = run_bin(
        "engine",
        &["--check-spider".into(), QUOTES_SPIDER.into()],
        &[],
    )
    .await;
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("\"quotes\"") && stdout.contains("is valid"),
        "{stdout}"
    );
}

#[tokio::test]
async fn check_spider_names_file_rule_and_field_of_each_mistake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "name = \"x\"\n[[rule]]\nname = \"list\"\n";
    let cases = [
        (
            "unknown-key.toml",
            format!("{base}colour = \"red\"\n"),
            vec!["rule \"list\"", "colour"],
        ),
        (
            "bad-selector.toml",
            format!(
                "{base}[[rule.extract]]\nkind = \"k\"\nfields.title = {{ selector = \"h1[\" }}\n"
            ),
            vec!["rule \"list\"", "field \"title\"", "bad CSS selector"],
        ),
        (
            "bad-regex.toml",
            format!("{base}[[rule.extract]]\nkind = \"k\"\nfields.n = {{ regex = \"(open\" }}\n"),
            vec!["rule \"list\"", "field \"n\"", "bad regex"],
        ),
        (
            "unknown-rule.toml",
            format!("{base}[[rule.follow]]\nselector = \"a\"\nrule = \"detail\"\n"),
            vec!["rule \"list\"", "follow #1", "\"detail\" does not exist"],
        ),
    ];
    for (file, source, needles) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, source).expect("write");
        for args in [
            vec!["--check-spider".to_owned()],
            vec!["--seed=http://127.0.0.1:1/".into(), "--spider".into()],
        ] {
            let mut args = args;
            args.push(path.display().to_string());
            let (status, _, stderr) = run_bin("engine", &args, &[]).await;
            assert_eq!(status.code(), Some(1), "{file}: {stderr}");
            let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(errors.len(), 1, "{file}: one error line: {stderr}");
            assert!(errors[0].contains(file), "{file} is named: {}", errors[0]);
            for needle in &needles {
                assert!(
                    errors[0].contains(needle),
                    "{file}: {needle:?} in {}",
                    errors[0]
                );
            }
        }
    }
    let (status, _, stderr) = run_bin(
        "engine",
        &["--check-spider".into(), "/no/such/spider.toml".into()],
        &[],
    )
    .await;
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("cannot read spider file /no/such/spider.toml"),
        "{stderr}"
    );
}
